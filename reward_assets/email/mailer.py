"""Building and handing over email: SMTP when a server is configured, else .eml files.

A mailer's `session()` opens everything that can fail without sending (connect, EHLO,
STARTTLS, login), so delivery marks a row `sending` only once a message can really go.
Failures are sorted by what they mean for the message: TransientSendError (nothing was
delivered, try again later), PermanentSendError (the server refused it for good), and
anything raised after the message body went out, which may or may not have been delivered
and propagates untouched so the row ends `uncertain` instead of being sent twice.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import hashlib
import os
import re
import smtplib
import ssl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from reward_assets.settings import Settings

_CRLF = b"\r\n"


# SMTP line endings, and no folding below RFC 5322's 998-character limit: a long
# List-Unsubscribe URL has no place to fold and would otherwise be RFC 2047-encoded,
# which mail clients do not read as a link.
POLICY = email.policy.SMTP.clone(max_line_length=998)


class TransientSendError(Exception):
    """The message was not delivered and may succeed later (4xx, no connection)."""


class ConnectionLostError(TransientSendError):
    """No usable connection: the rest of the batch would fail the same way."""


class PermanentSendError(Exception):
    """The server refused the message for good (5xx, unknown recipient)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class MailSession(Protocol):
    def send(self, message: EmailMessage) -> str: ...


def message_id_for(key: str, from_address: str) -> str:
    """A Message-ID fixed by the idempotency key, so a resent copy is recognisably the same."""
    domain = parseaddr(from_address)[1].rpartition("@")[2] or "localhost"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def build_email(
    row: Any,
    *,
    from_address: str,
    unsubscribe_url: str,
    message_id: str,
    date: dt.datetime | None = None,
) -> EmailMessage:
    """multipart/alternative (text, html) from anything with to_address, subject,
    text_body and html_body attributes: a Message or an outbox row."""
    message = EmailMessage(policy=POLICY)
    message["Subject"] = row.subject
    message["From"] = _header("From", from_address)
    message["To"] = row.to_address
    message["Date"] = _header("Date", format_datetime(date or dt.datetime.now(dt.UTC)))
    message["Message-ID"] = message_id
    # RFC 8058 one-click unsubscribe: mailbox providers show their own button for it.
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = _header(
        "List-Unsubscribe-Post", "List-Unsubscribe=One-Click"
    )
    # Quoted-printable keeps every part 7-bit, so no server needs 8BITMIME.
    message.set_content(row.text_body, cte="quoted-printable")
    message.add_alternative(row.html_body, subtype="html", cte="quoted-printable")
    return message


@lru_cache(maxsize=256)
def _header(name: str, value: str):
    # Parsing a header is most of an email's build time; these repeat from email to email
    # (the date to the second), and a parsed header is immutable, so one serves them all.
    return POLICY.header_factory(name, value)


def _reply_text(code: int, reply: bytes) -> str:
    return f"{code} {reply.decode(errors='replace')}".strip()


class _SmtpSession:
    def __init__(self, smtp: smtplib.SMTP):
        self._smtp: smtplib.SMTP | None = smtp

    def send(self, message: EmailMessage) -> str:
        if self._smtp is None:
            raise ConnectionLostError("the connection was lost earlier in this session")
        sender = parseaddr(message["From"])[1]
        recipient = parseaddr(message["To"])[1]
        try:
            self._expect(self._smtp.mail(sender), {250}, "sender")
            self._expect(self._smtp.rcpt(recipient), {250, 251}, "recipient")
            self._expect(self._smtp.docmd("DATA"), {354}, "data")
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            self.close()
            raise ConnectionLostError(f"connection lost before DATA: {error}") from error
        # From here the server may hold the message: a lost connection or a timeout is
        # ambiguous and propagates as it is.
        body = re.sub(rb"(?m)^\.", b"..", message.as_bytes(policy=POLICY))
        if not body.endswith(_CRLF):
            body += _CRLF
        self._smtp.send(body + b"." + _CRLF)
        code, reply = self._smtp.getreply()
        if code == 250:
            return _reply_text(code, reply)
        raise self._refusal(code, reply, "data")

    def _expect(self, answer: tuple[int, bytes], ok: set[int], phase: str) -> None:
        code, reply = answer
        if code in ok:
            return
        error = self._refusal(code, reply, phase)
        # Leave the session clean for the next message; the DATA phase never started.
        try:
            self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.close()
        raise error

    @staticmethod
    def _refusal(code: int, reply: bytes, phase: str) -> Exception:
        text = _reply_text(code, reply)
        if phase == "sender":
            # A refused sender (no auth, policy, rate limit) is about the session, not this
            # message: failing the message would fail the whole queue with it.
            return ConnectionLostError(f"sender refused: {text}")
        if 400 <= code < 500:
            return TransientSendError(text)
        if phase == "recipient":
            return PermanentSendError("bad address")
        return PermanentSendError(f"5xx: {text}")

    def close(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except (smtplib.SMTPException, OSError):
            self._smtp.close()
        self._smtp = None


class SmtpMailer:
    def __init__(
        self,
        host: str,
        port: int,
        starttls: bool,
        username: str,
        password: str,
        timeout: float,
    ):
        self.host = host
        self.port = port
        self.starttls = starttls
        self.username = username
        self.password = password
        self.timeout = timeout

    def _open(self) -> smtplib.SMTP:
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except (smtplib.SMTPException, OSError) as error:
            raise ConnectionLostError(f"cannot connect: {error}") from error
        try:
            smtp.ehlo_or_helo_if_needed()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password)
        # Wrong credentials, TLS or certificates are configuration errors, not outages:
        # they propagate so the run fails visibly instead of retrying forever.
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError, ssl.SSLError):
            smtp.close()
            raise
        except (smtplib.SMTPException, OSError) as error:
            smtp.close()
            raise ConnectionLostError(f"session setup failed: {error}") from error
        return smtp

    @contextmanager
    def session(self) -> Iterator[MailSession]:
        session = _SmtpSession(self._open())
        try:
            yield session
        finally:
            session.close()


class EmlMailer:
    """Writes each message to <folder>/<hash of its Message-ID>.eml: for local runs and
    demos, where nothing may leave the machine."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)

    @contextmanager
    def session(self) -> Iterator[MailSession]:
        self.folder.mkdir(parents=True, exist_ok=True)
        yield self

    def send(self, message: EmailMessage) -> str:
        local_part = str(message["Message-ID"] or "").strip("<>").partition("@")[0]
        if not re.fullmatch(r"[0-9a-f]{32}", local_part):
            raise ValueError("the Message-ID does not come from message_id_for")
        name = f"{local_part}.eml"
        target = self.folder / name
        if target.exists():
            return f"exists {name}"
        temporary = self.folder / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            temporary.write_bytes(message.as_bytes(policy=POLICY))
            os.replace(temporary, target)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise TransientSendError(f"cannot write {name}: {error}") from error
        return f"written {name}"


def mailer_from_settings(settings: Settings) -> SmtpMailer | EmlMailer:
    if not settings.smtp_host:
        return EmlMailer(settings.resolved_outbox_dir())
    return SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_starttls,
        settings.smtp_username,
        settings.smtp_password,
        settings.smtp_timeout_seconds,
    )
