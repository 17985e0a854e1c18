"""When a message may go: quiet hours and best local send hours in the customer's zone.

Every function takes timezone-aware datetimes and returns UTC ones (`next_allowed` returns
`at` itself when it is outside quiet hours). Quiet hours are the local hours [start, end),
wrapping past midnight when start > end; start == end means none. Local wall times that a
DST change skips move forward to the first instant that exists; wall times it repeats mean
their first occurrence.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = ZoneInfo("UTC")


@lru_cache(maxsize=1024)
def zone(name: str | None) -> ZoneInfo:
    """The IANA zone `name`; UTC when it is empty, missing (NaN from a frame) or unknown."""
    if not isinstance(name, str) or not name:
        return UTC
    try:
        return ZoneInfo(name)
    # Bad keys fail in several ways: not found, a folder ('America'), a malformed path.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return UTC


def is_quiet_hour(hour: int, start: int, end: int) -> bool:
    """Whether local `hour` falls in quiet hours [start, end): the one quiet-hour rule."""
    if start < end:
        return start <= hour < end
    if start > end:
        return hour >= start or hour < end
    return False


def in_quiet_hours(at: dt.datetime, tz_name: str | None, start: int, end: int) -> bool:
    return is_quiet_hour(_aware(at).astimezone(zone(tz_name)).hour, start, end)


def next_allowed(at: dt.datetime, tz_name: str | None, start: int, end: int) -> dt.datetime:
    """`at` when it is outside quiet hours, else the instant they end (local `end`:00)."""
    if not in_quiet_hours(at, tz_name, start, end):
        return at
    return _next_local_hour(at, end, zone(tz_name), inclusive=False)


def send_time(
    after: dt.datetime, best_local_hour: int, tz_name: str | None, start: int, end: int
) -> dt.datetime:
    """The first local `best_local_hour`:00 at or after `after`, moved out of quiet hours."""
    at = _next_local_hour(after, int(best_local_hour), zone(tz_name), inclusive=True)
    return next_allowed(at, tz_name, start, end)


def _next_local_hour(
    after: dt.datetime, hour: int, tz: ZoneInfo, *, inclusive: bool
) -> dt.datetime:
    after = _aware(after)
    day = after.astimezone(tz).date()
    at = _local_instant(day, hour, tz)
    if at < after or (at == after and not inclusive):
        at = _local_instant(day + dt.timedelta(days=1), hour, tz)
    return at


def _local_instant(day: dt.date, hour: int, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant of local `day` `hour`:00: the first one if repeated, the first
    existing one after it if skipped."""
    wall = dt.datetime.combine(day, dt.time(hour), tzinfo=tz)  # fold=0: first occurrence
    utc = wall.astimezone(dt.UTC)
    if utc.astimezone(tz).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return utc
    # `wall` falls in a gap. fold=0 read it with the offset before the change, which lands
    # as far past the gap's end as `wall` is past its start; fold=1 lands before the gap.
    # The change itself is the first instant whose local time is not before `wall`.
    naive = wall.replace(tzinfo=None)
    low = int(wall.replace(fold=1).timestamp())
    high = int(utc.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        local = dt.datetime.fromtimestamp(middle, tz).replace(tzinfo=None)
        if local >= naive:
            high = middle
        else:
            low = middle
    return dt.datetime.fromtimestamp(high, dt.UTC)


def _aware(at: dt.datetime) -> dt.datetime:
    # A naive datetime would be read in the machine's zone, silently shifting every send.
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"timezone-aware datetime required, got {at.isoformat()}")
    return at
