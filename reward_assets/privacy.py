"""Masking of personal data before it reaches logs, run metadata or check examples."""

from __future__ import annotations

import re
from collections.abc import Iterable

PERSONAL_COLUMNS = frozenset({"email", "first_name", "last_name"})
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def mask_email(value: str) -> str:
    local, at, domain = value.partition("@")
    if not at:
        return mask_text(value)
    return f"{local[:1]}***@{domain}"


def mask_text(value: str) -> str:
    return f"{value[:1]}***" if value else value


def mask_value(column: str, value: object) -> object:
    if not isinstance(value, str) or column not in PERSONAL_COLUMNS:
        return value
    return mask_email(value) if column == "email" else mask_text(value)


def mask_record(record: dict[str, object]) -> dict[str, object]:
    return {column: mask_value(column, value) for column, value in record.items()}


def mask_fields(values: Iterable[object]) -> list[object]:
    """A row whose fields cannot be matched to columns (a misread line): every text masked."""
    return [mask_text(v) if isinstance(v, str) else v for v in values]


def mask_emails_in(text: str) -> str:
    """Free text (an error message) with every email address in it masked."""
    return _EMAIL.sub(lambda found: mask_email(found.group()), text)
