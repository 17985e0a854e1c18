"""What was recommended on each scoring day: the view `ml.recommendation_log`.

A customer's set mostly stays as it was from one day to the next (`recommendation_sets`
carries it while its inputs do not move), so the log stores each set once, with the
logged days that served it: `ml.recommendation_spans` holds a set's rows with
`valid_from`, the first logged day that served it, and `valid_to`, the logged day that
replaced it (NULL while it serves); `ml.recommendation_days` holds the days logged. The
view reads them back as one row per logged day, customer and rank: the rows
`ml.recommendation_sets` held that day. A day adds the rows of the customers whose set
changed (a tenth of them on a typical day at 1,000,000 customers: about a million rows
instead of ten).

A set is the same as the one logged for a customer when it was computed on the same day
from the same inputs (`computed_as_of`, `inputs_key`): a carried set is a copy of the
rows computed then. The ranking fallback's sets are computed every day, so they are
logged every day.

The log only grows at its end: a day is logged from the sets when they are as of that
day; logging the last logged day again replaces it (a re-run of the scoring), and an
earlier day stays as it was logged, as does a day the sets are not as of.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reward_assets.recommend.sets import COLUMNS, TABLE_COLUMNS
from reward_assets.recommend.sets import TABLE as SETS
from reward_assets.warehouse.store import Warehouse

LOG = "ml.recommendation_log"
SPANS = "ml.recommendation_spans"
DAYS = "ml.recommendation_days"
CHANGED = "ml.recommendation_log__changed"
# The columns the log shows each day besides `as_of`, with the sets' types.
LOGGED = {name: kind for name, kind in COLUMNS.items() if name not in ("as_of", "source")}
# What tells one set of a customer from another.
IDENTITY = ("computed_as_of", "inputs_key")
SPAN_COLUMNS = {
    **LOGGED,
    **{name: TABLE_COLUMNS[name] for name in IDENTITY},
    "valid_from": "DATE",
    "valid_to": "DATE",
}
_OPEN_END = "DATE '9999-12-31'"


@dataclass(frozen=True)
class Logged:
    """What logging a day did."""

    day: dt.date
    rows: int  # the day's rows in the log
    added: int  # span rows written: the changed customers' sets
    customers_changed: int  # customers whose set differs from the one logged before
    stored: int  # span rows in all, every logged day together
    skipped: str = ""  # why the day was left as it was, if it was


def log_day(warehouse: Warehouse, day: dt.date) -> Logged:
    """Log the sets as of `day` (see the module's docstring), in one transaction."""
    with warehouse.begin() as conn:
        ensure_log(conn)
        as_of = (None, None)
        if _kind(conn, SETS):
            as_of = conn.execute(sa.text(f"SELECT MIN(as_of), MAX(as_of) FROM {SETS}")).first()
        last = conn.execute(sa.text(f"SELECT MAX(as_of) FROM {DAYS}")).scalar()
        reason = ""
        if as_of[0] is None:
            reason = f"{SETS} is missing or empty"
        elif as_of[0] != day or as_of[1] != day:
            reason = f"{SETS} is as of {as_of[1]}, not {day}"
        elif last is not None and day < last:
            reason = f"the log only grows at its end and {last} is logged"
        if reason:
            stored = conn.execute(sa.text(f"SELECT COUNT(*) FROM {SPANS}")).scalar()
            rows = _rows_of_day(conn, day)
            return Logged(day, rows, 0, 0, int(stored), f"{day} left as it was: {reason}")
        params = {"day": day}
        if last == day:  # undo the day's logging: the spans it opened and closed
            conn.execute(sa.text(f"DELETE FROM {SPANS} WHERE valid_from = :day"), params)
            conn.execute(
                sa.text(f"UPDATE {SPANS} SET valid_to = NULL WHERE valid_to = :day"), params
            )
            conn.execute(sa.text(f"DELETE FROM {DAYS} WHERE as_of = :day"), params)
        identity = ", ".join(("customer_id", *IDENTITY))
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {CHANGED}"))
        # EXCEPT compares NULLs as equal: a set without a key matches one without a key.
        conn.execute(
            sa.text(
                f"""
                CREATE TABLE {CHANGED} AS
                WITH served AS (SELECT DISTINCT {identity} FROM {SETS}),
                logged AS (SELECT DISTINCT {identity} FROM {SPANS} WHERE valid_to IS NULL)
                SELECT customer_id FROM (SELECT * FROM served EXCEPT SELECT * FROM logged) a
                UNION
                SELECT customer_id FROM (SELECT * FROM logged EXCEPT SELECT * FROM served) b
                """
            )
        )
        changed = f"customer_id IN (SELECT customer_id FROM {CHANGED})"
        conn.execute(
            sa.text(f"UPDATE {SPANS} SET valid_to = :day WHERE valid_to IS NULL AND {changed}"),
            params,
        )
        columns = ", ".join((*LOGGED, *IDENTITY))
        conn.execute(
            sa.text(
                f"INSERT INTO {SPANS} ({columns}, valid_from) "
                f"SELECT {columns}, :day FROM {SETS} WHERE {changed}"
            ),
            params,
        )
        count = f"SELECT COUNT(*) FROM {SPANS} WHERE valid_from = :day"
        added = conn.execute(sa.text(count), params).scalar()
        customers = conn.execute(sa.text(f"SELECT COUNT(*) FROM {CHANGED}")).scalar()
        conn.execute(sa.text(f"DROP TABLE {CHANGED}"))
        conn.execute(sa.text(f"INSERT INTO {DAYS} (as_of) VALUES (:day)"), params)
        rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM {SETS}")).scalar()
        stored = conn.execute(sa.text(f"SELECT COUNT(*) FROM {SPANS}")).scalar()
    return Logged(day, int(rows), int(added), int(customers), int(stored))


def ensure_log(conn: Connection) -> None:
    """The spans, the days and the view over them, in `conn`'s transaction; a log kept
    as a table of every day's rows (before the spans) becomes spans, each day its own."""
    spans = ", ".join(f"{name} {sql_type}" for name, sql_type in SPAN_COLUMNS.items())
    conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {SPANS} ({spans})"))
    conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {DAYS} (as_of DATE)"))
    if _kind(conn, LOG) == "BASE TABLE":
        _from_table(conn)
    shown = ", ".join(f"s.{name}" for name in LOGGED)
    conn.execute(
        sa.text(
            f"CREATE OR REPLACE VIEW {LOG} AS SELECT d.as_of, {shown} "
            f"FROM {DAYS} d JOIN {SPANS} s ON s.valid_from <= d.as_of "
            f"AND COALESCE(s.valid_to, {_OPEN_END}) > d.as_of"
        )
    )


def _from_table(conn: Connection) -> None:
    """The rows of a log table as spans of one logged day each (the last day's open), the
    table dropped; the next day logged then finds every set changed, once."""
    columns = ", ".join(LOGGED)
    conn.execute(sa.text(f"INSERT INTO {DAYS} (as_of) SELECT DISTINCT as_of FROM {LOG}"))
    conn.execute(
        sa.text(
            f"""
            INSERT INTO {SPANS} ({columns}, valid_from, valid_to)
            SELECT {", ".join(f"l.{c}" for c in LOGGED)}, l.as_of, n.next_day
            FROM {LOG} l JOIN (
                SELECT as_of, LEAD(as_of) OVER (ORDER BY as_of) AS next_day
                FROM (SELECT DISTINCT as_of FROM {LOG}) d
            ) n ON n.as_of = l.as_of
            """
        )
    )
    conn.execute(sa.text(f"DROP TABLE {LOG}"))


def _kind(conn: Connection, table: str) -> str | None:
    """'BASE TABLE', 'VIEW' or None, from information_schema on both engines."""
    schema, _, name = table.rpartition(".")
    return conn.execute(
        sa.text(
            "SELECT table_type FROM information_schema.tables "
            "WHERE table_schema = :schema AND table_name = :name"
        ),
        {"schema": schema, "name": name},
    ).scalar()


def _rows_of_day(conn: Connection, day: dt.date) -> int:
    found = conn.execute(sa.text(f"SELECT COUNT(*) FROM {LOG} WHERE as_of = :day"), {"day": day})
    return int(found.scalar())
