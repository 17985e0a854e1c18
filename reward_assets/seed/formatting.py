"""Vectorised formatting of numpy columns into Arrow string and decimal arrays.

Zero-padded ids, ISO 8601 UTC timestamps, decimal money and labels from codes are built on
byte matrices rather than with Python string formatting; the conversions between dates and
epoch seconds live here too.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache

import numpy as np
import pyarrow as pa

from reward_assets.seed.model import DAY


def _string_array(data: np.ndarray, offsets: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(
        pa.string(),
        len(offsets) - 1,
        [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(np.ascontiguousarray(data))],
    )


def _fixed_width_strings(matrix: np.ndarray) -> pa.Array:
    rows, width = matrix.shape
    return _string_array(matrix.reshape(-1), np.arange(rows + 1, dtype=np.int64) * width)


# ASCII digits of 0000..9999 as little-endian words, so formatting divides once per four
# digits and writes four bytes at a time.
_QUADS = np.frombuffer("".join(f"{i:04d}" for i in range(10_000)).encode(), np.uint32)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) matrix of the zero-padded ASCII digits of non-negative integers."""
    groups = -(-width // 4)
    words = np.empty((values.size, groups), dtype=np.uint32)
    rest = values
    for group in range(groups - 1, -1, -1):
        rest, quad = np.divmod(rest, 10_000)
        words[:, group] = _QUADS[quad]
    return words.view(np.uint8)[:, groups * 4 - width :]


def format_ids(prefix: str, numbers: np.ndarray, min_width: int) -> pa.Array:
    """`f"{prefix}{n:0{min_width}d}"` for every n, built without Python string formatting."""
    numbers = np.asarray(numbers, dtype=np.int64)
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    full = max(min_width, len(str(int(numbers.max(initial=0)))))
    matrix = np.empty((numbers.size, head.size + full), dtype=np.uint8)
    matrix[:, : head.size] = head
    matrix[:, head.size :] = _digits(numbers, full)
    if full == min_width:
        return _fixed_width_strings(matrix)
    widths = np.full(numbers.size, min_width)
    for power in range(min_width, full):
        widths += numbers >= 10**power
    # Drop each row's surplus leading zeros; boolean selection keeps row-major order.
    columns = np.arange(head.size + full)
    keep = (columns < head.size) | (columns - head.size >= (full - widths)[:, None])
    offsets = np.zeros(numbers.size + 1, dtype=np.int64)
    np.cumsum(head.size + widths, out=offsets[1:])
    return _string_array(matrix[keep], offsets)


def _civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proleptic Gregorian (year, month, day) of days since 1970-01-01 (H. Hinnant)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    return yoe + era * 400 + (month <= 2), month, day


@cache
def _clock_faces() -> np.ndarray:
    """(86400, 8) ASCII `HH:MM:SS` for every second of a day."""
    second = np.arange(DAY, dtype=np.int64)
    out = np.empty((DAY, 8), dtype=np.uint8)
    out[:] = np.frombuffer(b"00:00:00", dtype=np.uint8)
    out[:, 0:2] = _digits(second // 3600, 2)
    out[:, 3:5] = _digits(second // 60 % 60, 2)
    out[:, 6:8] = _digits(second % 60, 2)
    return out


def format_timestamps(seconds: np.ndarray) -> pa.Array:
    """ISO 8601 UTC at seconds resolution, `2023-03-01T14:05:09Z`."""
    seconds = np.asarray(seconds, dtype=np.int64)
    days, second_of_day = np.divmod(seconds, DAY)
    first = int(days.min(initial=0))
    year, month, day = _civil_from_days(np.arange(first, int(days.max(initial=0)) + 1))
    calendar = np.empty((year.size, 10), dtype=np.uint8)
    calendar[:] = np.frombuffer(b"0000-00-00", dtype=np.uint8)
    calendar[:, 0:4] = _digits(year, 4)
    calendar[:, 5:7] = _digits(month, 2)
    calendar[:, 8:10] = _digits(day, 2)
    out = np.empty((seconds.size, 20), dtype=np.uint8)
    out[:, 0:10] = calendar[days - first]
    out[:, 10] = ord("T")
    out[:, 11:19] = _clock_faces()[second_of_day]
    out[:, 19] = ord("Z")
    return _fixed_width_strings(out)


def money(cents: np.ndarray) -> pa.Array:
    """Cents as decimal(12, 2): written as `12.34` in CSV, typed in Parquet."""
    cents = np.asarray(cents, dtype=np.int64)
    words = np.stack([cents, np.where(cents < 0, -1, 0)], axis=1)  # little-endian int128
    return pa.Array.from_buffers(pa.decimal128(12, 2), cents.size, [None, pa.py_buffer(words)])


def label_array(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(np.asarray(codes))


def epoch_seconds(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def date_of(seconds: int) -> date:
    return date(1970, 1, 1) + timedelta(days=seconds // DAY)
