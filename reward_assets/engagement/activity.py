"""Email activity as the engagement model reads it: each send with its first open and
click, and every open, at the customers' local hours, up to an end time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from reward_assets.warehouse.store import Warehouse

HOUR_NS = 3_600_000_000_000


@dataclass(frozen=True)
class Activity:
    """Sends and opens up to an end time, customers referred to by their row in `customers`."""

    customers: pd.DataFrame  # customer_id, timezone, tier
    sends: pd.DataFrame  # customer, sent_at, hour, weekday, category, opened_at, clicked_at
    opens: pd.DataFrame  # customer, at, hour
    categories: tuple[str, ...]  # category codes index this; len(categories) is 'unknown'


def local_clock(utc: pd.Series, zones: pd.Categorical) -> tuple[np.ndarray, np.ndarray]:
    """Local hour and weekday (0 = Monday) of naive-UTC times in each row's IANA zone (none
    missing). Rows are grouped by the zones' codes (grouping millions of rows by the zone
    names cost as much as converting them) and each zone's local times are converted once,
    hour and weekday counted from their nanoseconds: pandas' hour and weekday fields each
    convert them again."""
    hours = np.zeros(len(utc), dtype=np.int64)
    values = utc.to_numpy().astype("datetime64[ns]")
    codes = np.asarray(zones.codes)
    order = np.argsort(codes, kind="stable")
    ends = np.cumsum(np.bincount(codes, minlength=len(zones.categories)))
    for code, end in enumerate(ends):
        rows = order[(ends[code - 1] if code else 0) : end]
        if not rows.size:
            continue
        try:
            tz = ZoneInfo(zones.categories[code])
        except (ZoneInfoNotFoundError, ValueError):
            tz = dt.UTC  # a zone the tz database does not know: treat the time as UTC
        local = pd.DatetimeIndex(values[rows]).tz_localize("UTC").tz_convert(tz)
        hours[rows] = np.floor_divide(local.tz_localize(None).asi8, HOUR_NS)
    # Hours since 1970-01-01 local, a Thursday (weekday 3).
    return hours % 24, (np.floor_divide(hours, 24) + 3) % 7


def content_category(campaign: pd.Series, categories: tuple[str, ...]) -> np.ndarray:
    """Category code of `wk<yyyymmdd>_<category>` campaigns; anything else is 'unknown'."""
    # Campaigns are few and sends many: each distinct name is parsed once.
    encoded = pc.dictionary_encode(pa.array(campaign, pa.string()))
    name = pd.Series(encoded.dictionary, dtype="string").str.split("_", n=1).str[1]
    codes = pd.Index(categories).get_indexer(name).astype(np.int64)
    # The last entry stands for a missing campaign.
    codes = np.append(np.where(codes < 0, len(categories), codes), len(categories))
    return codes[encoded.indices.fill_null(len(codes) - 1).to_numpy(zero_copy_only=False)]


def load_activity(
    warehouse: Warehouse,
    end: dt.datetime,
    categories: tuple[str, ...] | None = None,
    in_time_order: bool = True,
) -> Activity:
    """Email sends, opens and clicks before `end`, with local send and open times, in time
    order (training's windows and sample follow the rows' order); `history_at` only counts
    them, so send times leave the order to the engine (`in_time_order=False`) and spare
    the sort of every send."""
    if categories is None:
        known = warehouse.frame(
            "SELECT DISTINCT category FROM marts.dim_rewards WHERE category IS NOT NULL"
        )
        categories = tuple(sorted(known["category"]))
    customers = warehouse.text_frame(
        "SELECT customer_id, timezone, tier FROM marts.dim_customers ORDER BY customer_id"
    )
    # The warehouse pairs each send with its message's first open and click and names the
    # customer by their row in `customers` (the same ORDER BY): reading every event's ids
    # and deduplicating them here cost more than the rest of the send times together.
    events = """
        WITH customers AS (
            SELECT customer_id, ROW_NUMBER() OVER (ORDER BY customer_id) - 1 AS customer
            FROM marts.dim_customers
        ), events AS (
            SELECT c.customer, e.event_type, e.occurred_at, e.message_id, e.campaign
            FROM marts.fct_engagement_events e JOIN customers c ON c.customer_id = e.customer_id
            WHERE e.event_type IN ('sent', 'open', 'click')
              AND e.message_id IS NOT NULL AND e.occurred_at < :end
        )"""
    sends = warehouse.text_frame(
        events
        + """, firsts AS (
            SELECT message_id,
                   MIN(CASE WHEN event_type = 'open' THEN occurred_at END) AS opened_at,
                   MIN(CASE WHEN event_type = 'click' THEN occurred_at END) AS clicked_at
            FROM events WHERE event_type <> 'sent' GROUP BY message_id
        ), repeated AS (
            SELECT message_id FROM events WHERE event_type = 'sent'
            GROUP BY message_id HAVING COUNT(*) > 1
        ), sends AS (
            -- A message's first send row, should it have several; sorting every send by
            -- message for the few that do would double the query's time.
            SELECT customer, occurred_at, message_id, campaign FROM events
            WHERE event_type = 'sent' AND message_id NOT IN (SELECT message_id FROM repeated)
            UNION ALL
            SELECT * FROM (
                SELECT DISTINCT ON (message_id) customer, occurred_at, message_id, campaign
                FROM events
                WHERE event_type = 'sent' AND message_id IN (SELECT message_id FROM repeated)
                ORDER BY message_id, occurred_at
            ) first_of_repeated
        )
        SELECT s.customer, s.occurred_at AS sent_at, s.campaign, f.opened_at, f.clicked_at
        FROM sends s LEFT JOIN firsts f ON f.message_id = s.message_id
        """
        + ("ORDER BY s.occurred_at, s.message_id" if in_time_order else ""),
        {"end": end},
    )
    opens = warehouse.text_frame(
        events
        + """
        SELECT customer, occurred_at AS at FROM events WHERE event_type = 'open'
        """
        + ("ORDER BY occurred_at, message_id" if in_time_order else ""),
        {"end": end},
    )
    zones = pd.Categorical(customers["timezone"].fillna("UTC"))

    def local(frame: pd.DataFrame, at: str) -> tuple[np.ndarray, np.ndarray]:
        return local_clock(frame[at], zones.take(frame["customer"].to_numpy(dtype=np.int64)))

    for column in ("sent_at", "opened_at", "clicked_at"):
        sends[column] = sends[column].astype("datetime64[ns]")
    hour, weekday = local(sends, "sent_at")
    sends = pd.DataFrame(
        {
            "customer": sends["customer"].to_numpy(dtype=np.int64),
            "sent_at": sends["sent_at"].to_numpy(),
            "hour": hour,
            "weekday": weekday,
            "category": content_category(sends["campaign"], categories),
            "opened_at": sends["opened_at"].to_numpy(),
            "clicked_at": sends["clicked_at"].to_numpy(),
        }
    )
    opens = pd.DataFrame(
        {
            "customer": opens["customer"].to_numpy(dtype=np.int64),
            "at": opens["at"].astype("datetime64[ns]").to_numpy(),
            "hour": local(opens, "at")[0],
        }
    )
    return Activity(customers, sends, opens, categories)
