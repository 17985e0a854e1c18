"""A real SMTP server on loopback (aiosmtpd) whose answers the tests control."""

from __future__ import annotations

import email
import email.policy
import socket
from collections import deque
from email.message import EmailMessage

from aiosmtpd.controller import Controller


class RecordingHandler:
    """Accepts and records messages, unless told otherwise.

    `data_replies`: replies to give, one per message, instead of accepting it (e.g.
    "451 4.3.0 try later", "554 5.7.1 rejected"); `refused`: recipients answered 550;
    `hang_up_after_data`: record the next message, then drop the connection unanswered.
    """

    def __init__(self):
        self.messages: list[EmailMessage] = []
        self.data_replies: deque[str] = deque()
        self.refused: set[str] = set()
        self.hang_up_after_data = False

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refused:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_replies:
            return self.data_replies.popleft()
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        if self.hang_up_after_data:
            self.hang_up_after_data = False
            server.transport.abort()
        return "250 2.0.0 queued"

    def ids(self) -> list[str]:
        return [str(message["Message-ID"]) for message in self.messages]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpServer:
    """Stoppable and restartable on the same port; the handler (and its record) persists."""

    host = "127.0.0.1"

    def __init__(self):
        self.port = free_port()
        self.handler = RecordingHandler()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.messages
