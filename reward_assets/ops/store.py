"""The operational store: small rows that must be written while anything else runs.

A SQLAlchemy URL: SQLite in WAL mode under DATA_DIR by default (readers never wait for the
one writer), PostgreSQL in production. It holds the model registry, the email outbox, the
suppression list, scheduled follow-ups, the email events providers post, the switches
operators flip (the kill switch), the cache of LLM-written copy, the HTTP API's
idempotency keys and the operator alerts sent.

The tables below are the schema at the latest revision of `ops/migrations/`: a change to
them ships with a new revision (`ops/migrate.py` says how), which brings existing stores
along when they are opened (SQLite) or upgraded (PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from reward_assets.ops import migrate
from reward_assets.ops.locks import write_locked

metadata = sa.MetaData()

model_registry = sa.Table(
    "model_registry",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    # candidate -> approved | rejected, set by the model's blocking check.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("decided_at", sa.DateTime),
    sa.Column("artefact_path", sa.Text, nullable=False),
    sa.Column("trained_as_of", sa.Date),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("reasons", sa.JSON),
)

# One row per message the product ever decided on, keyed by its idempotency key
# "<customer_id>:<campaign>:<occurrence>" (the welcome's occurrence is "once"), so no
# replay can create a second message. Status moves queued -> sending -> sent | failed,
# a `sending` row whose lease ran out becomes `uncertain` (never resent automatically);
# `skipped` (decided not to contact) and `cancelled` (a rule blocked it at send time)
# carry their reason.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("idempotency_key", sa.String(200), primary_key=True),
    sa.Column("customer_id", sa.String(64), nullable=False, index=True),
    sa.Column("campaign", sa.String(32), nullable=False),
    sa.Column("occurrence", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("send_at", sa.DateTime, nullable=False, index=True),  # naive UTC
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("to_address", sa.Text),
    sa.Column("message_id", sa.String(200)),
    sa.Column("subject", sa.Text),
    sa.Column("preheader", sa.Text),
    sa.Column("text_body", sa.Text),
    sa.Column("html_body", sa.Text),
    sa.Column("reward_ids", sa.JSON),
    sa.Column("content_source", sa.String(16)),  # llm | cache | template
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.DateTime),  # naive UTC; retry backoff
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("lease_until", sa.DateTime),  # naive UTC
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("sent_at", sa.DateTime),
    sa.Column("smtp_response", sa.Text),
    sa.Column("run_id", sa.String(64)),
    # Revision 0002: the experiment arm the message is in, and what it was made from
    # (`email.lineage`): model versions, data day, segment, content source and hashes.
    sa.Column("experiment", sa.String(64)),
    sa.Column("variant", sa.String(64)),
    sa.Column("lineage", sa.JSON),
    # Revision 0004, for delivery's claim: the due rows in send order, read from the index
    # alone, also past the rows deferred to a later attempt (`email.delivery`).
    sa.Index("ix_outbox_due", "status", "send_at", "idempotency_key", "next_attempt_at"),
)

# Marketing stops for a customer on unsubscribe, complaint or hard bounce; first reason kept.
suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("customer_id", sa.String(64), primary_key=True),
    sa.Column("reason", sa.String(32), nullable=False),  # unsubscribe | complaint | hard_bounce
    sa.Column("source", sa.String(32), nullable=False),  # events | api | operator
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# Follow-ups the onboarding job schedules; the engagement cycle sends or cancels them.
followups = sa.Table(
    "followups",
    metadata,
    sa.Column("customer_id", sa.String(64), primary_key=True),
    sa.Column("campaign", sa.String(32), primary_key=True),  # followup_3 | followup_7
    sa.Column("due_date", sa.Date, nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),  # pending | queued | cancelled
    sa.Column("reason", sa.Text),
    sa.Column("signup_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

# Operator switches, e.g. ("kill_switch", "on"): read at every send.
switches = sa.Table(
    "switches",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("updated_by", sa.String(64)),
)

# LLM-written drafts keyed by a hash of the prompt's inputs and the model id.
llm_cache = sa.Table(
    "llm_cache",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("draft", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# The HTTP API's Idempotency-Key header: a retried POST replays the stored answer. A row
# without a status is a request still being processed (or one whose process died).
api_idempotency = sa.Table(
    "api_idempotency",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),  # sha256 of method, path, body
    sa.Column("status_code", sa.Integer),
    sa.Column("response", sa.JSON),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("completed_at", sa.DateTime),
)

# Operator alerts, one row per alert and channel (`alerts.py`). The sender inserts the row
# (status `sending`) before it sends, so a sensor that ticks again sends nothing twice;
# a failed send leaves it `pending` for the next tick to retry, a delivered one is `sent`.
sent_alerts = sa.Table(
    "sent_alerts",
    metadata,
    sa.Column("alert_key", sa.String(300), primary_key=True),  # e.g. run_failure:<run id>
    sa.Column("channel", sa.String(16), primary_key=True),  # email | webhook
    sa.Column("kind", sa.String(32), nullable=False),  # run_failure | freshness
    sa.Column("status", sa.String(16), nullable=False, index=True),  # sending | pending | sent
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)


# Revision 0002: email events a provider posted to the API (`email.webhooks`), one row per
# provider event id so a replay changes nothing; the `provider_events` asset copies them
# to the warehouse.
provider_events = sa.Table(
    "provider_events",
    metadata,
    sa.Column("event_id", sa.String(200), primary_key=True),  # "<provider>:<its event id>"
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("event_type", sa.String(16), nullable=False),  # the input contract's types
    sa.Column("message_id", sa.String(200), index=True),
    sa.Column("customer_id", sa.String(64)),  # None: no outbox row has the Message-ID
    sa.Column("campaign", sa.String(32)),
    sa.Column("hard_bounce", sa.Boolean, nullable=False, default=False),
    sa.Column("occurred_at", sa.DateTime, nullable=False),  # naive UTC
    sa.Column("received_at", sa.DateTime, nullable=False),
)


def to_db(value: dt.datetime) -> dt.datetime:
    """Aware UTC -> the naive UTC the store keeps."""
    if value.tzinfo is None:
        # astimezone() would read a naive value as local time: refuse instead of guessing.
        raise ValueError("expected a timezone-aware datetime")
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def from_db(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else value.replace(tzinfo=dt.UTC)


def stored_now() -> dt.datetime:
    return to_db(dt.datetime.now(dt.UTC))


def insert_missing(conn: Connection, table: sa.Table, rows: Sequence[dict]) -> int:
    """Insert the rows whose primary key is not taken yet; returns how many went in.

    The statement of `inserted_keys` without RETURNING, run as one executemany of plain
    values on the driver: Core's per-row parameter handling cost more than the inserts
    themselves for the cycle's 100k+ outbox rows. Each value still goes through its
    column's bind processor for the engine (JSON, SQLite's datetime text), and columns
    the rows leave out take their default, so the rows stored are Core's. Both drivers
    sum the row count over the batch: conflicting rows count nothing. A left-out column
    whose default is not a plain value (a callable, a SQL expression) is refused.

    Core alone cost more, measured (process CPU, best of 3, 200,000 outbox rows with their
    JSON and datetimes in one call; new keys / all keys taken): SQLite 3.60 / 2.48 s here,
    5.92 / 4.13 s with `conn.execute(insert...on_conflict_do_nothing(), rows)`, 5.27 / 4.04
    s with that statement compiled once; PostgreSQL 6.61 / 6.15 s here, 7.52 / 6.50 and
    7.43 / 6.34 s. Counting `inserted_keys` (RETURNING, insertmanyvalues) cost more still.
    Through Core, psycopg's count also needs `preserve_rowcount` (else -1).
    """
    if not rows:
        return 0
    statement, names, fills = _insert_statement(conn.dialect, table, tuple(rows[0]))
    columns = []
    for name, (fill, process, is_datetime) in zip(names, fills, strict=True):
        values = [row[name] for row in rows] if fill is _GIVEN else [fill] * len(rows)
        if process is not None:
            values = _processed(values, process) if is_datetime else list(map(process, values))
        columns.append(values)
    params = list(zip(*columns, strict=True))
    if not conn.dialect.positional:
        params = [dict(zip(names, values, strict=True)) for values in params]
    return conn.exec_driver_sql(statement, params).rowcount


_GIVEN = object()  # the rows carry the column's value


@lru_cache(maxsize=64)
def _insert_statement(
    dialect: sa.Dialect, table: sa.Table, keys: tuple[str, ...]
) -> tuple[str, tuple[str, ...], tuple[tuple[object, Callable | None, bool], ...]]:
    """The ON CONFLICT DO NOTHING insert of rows with `keys`, for the driver: its SQL, its
    parameters in order and, for each, the value filled in (`_GIVEN`: the row's), the
    column's bind processor and whether the column holds datetimes."""
    insert = sqlite_insert if dialect.name == "sqlite" else postgresql_insert
    compiled = insert(table).on_conflict_do_nothing().compile(dialect=dialect, column_keys=keys)
    names = tuple(compiled.positiontup if dialect.positional else compiled.bind_names.values())
    fills = []
    for name in names:
        column = table.c[name]
        fill = _GIVEN
        if name not in keys:
            # A column the rows leave out that has a default: Core fills it in.
            if column.default is None or not column.default.is_scalar:
                raise ValueError(f"{table.name}.{name}: no value and no scalar default")
            fill = column.default.arg
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        fills.append((fill, process, isinstance(column.type, sa.DateTime)))
    return compiled.string, names, tuple(fills)


def _processed(values: list, process: Callable) -> list:
    """`process` on each datetime, once per distinct naive one: a batch's rows share a few
    instants (the run's clock, the day's send hours), and equal naive datetimes are stored
    alike. Equal aware ones need not be (one instant in two zones), so each is processed."""
    done = {v: process(v) for v in set(values) if v is None or v.tzinfo is None}
    return [done[v] if v in done else process(v) for v in values]


def inserted_keys(conn: Connection, table: sa.Table, rows: Sequence[dict]) -> list[tuple]:
    """`insert_missing`, returning the primary keys of the rows that went in.

    One statement on either engine (ON CONFLICT DO NOTHING), so concurrent writers of the
    same key never fail and never overwrite each other, and each key is reported to the
    one writer that inserted it. The keys come from RETURNING: PostgreSQL reports no row
    count for a multi-row insert.
    """
    if not rows:
        return []
    insert = sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert
    statement = insert(table).on_conflict_do_nothing().returning(*table.primary_key.columns)
    return [tuple(row) for row in conn.execute(statement, list(rows)).all()]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class OpsStore:
    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def locked(self, name: str) -> Iterator[Connection]:
        """A transaction no other `locked(name)` transaction overlaps (`locks.write_locked`)."""
        with write_locked(self.engine, name) as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def open_ops_store(url: str) -> Iterator[OpsStore]:
    """The store at `url`, its schema checked first: an embedded (SQLite) or empty store is
    brought to the code's revision, an outdated PostgreSQL one refused (`migrate.prepare`)."""
    store = OpsStore(url)
    try:
        migrate.prepare(store.engine, metadata.tables)
        yield store
    finally:
        store.dispose()
