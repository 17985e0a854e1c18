"""The SQL models of `dbt_like_sql/`: parsing, dependency order and materialisation.

A model is built beside its table and swapped in only once its audit approves
(`staging.py`: write, audit, publish); `BUILDS` says how each `materialized:` kind builds.

A model file is plain SQL with a header of `-- key: value` lines:

    -- schema: marts
    -- materialized: table | partitioned | history | view | incremental
    -- partition_column: occurred_at      (partitioned and incremental models; a view's
                                          is the time its source's loads replace
                                          windows of, `quality/publish.py`)
    -- incremental_on: dim_customers(customer_id) dim_rewards(reward_id, category)
                                          (incremental models only)
    -- group: warehouse
    -- description: One line a UI user reads.

`{{ ref('model') }}` and `{{ source('raw', 'entity') }}` name other tables and make the
lineage. Values come in as bound parameters (`:as_of`, `:as_of_end`, `:partition_start`,
`:partition_end`, `:period_start`, `:holdout_threshold`, `:tiers`), never as pasted text;
so a view, whose SQL the database stores, takes none.

The tier order belongs to the input contract, which the warehouse does not import, so
it arrives as `:tiers`, the tier names lowest first. Two macros read it, so no model
spells the order out: `{{ tier_rank('column') }}` is the column's tier rank from 1 (NULL
for no or an unknown tier) and `{{ lowest_tier() }}` the lowest tier's name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reward_assets.warehouse.load_log import latest_seq, windows_since
from reward_assets.warehouse.staging import (
    Audit,
    Built,
    Slice,
    Staged,
    Window,
    replace_rows,
    staged_name,
    write_audit_swap,
)
from reward_assets.warehouse.store import Warehouse

_REF = re.compile(r"\{\{\s*ref\(\s*'([a-z_][a-z0-9_]*)'\s*\)\s*\}\}")
_SOURCE = re.compile(r"\{\{\s*source\(\s*'([a-z_]+)'\s*,\s*'([a-z_][a-z0-9_]*)'\s*\)\s*\}\}")
_TIER_RANK = re.compile(r"\{\{\s*tier_rank\(\s*'([a-z_][a-z0-9_.]*)'\s*\)\s*\}\}")
_LOWEST_TIER = re.compile(r"\{\{\s*lowest_tier\(\s*\)\s*\}\}")
# A bound list is a typeless literal to PostgreSQL until cast.
_TIERS = "CAST(:tiers AS VARCHAR[])"
_HEADER = re.compile(r"^--\s*([a-z_]+)\s*:\s*(.*?)\s*$")
_HEADER_KEYS = {
    "schema",
    "materialized",
    "partition_column",
    "incremental_on",
    "group",
    "description",
}
_DIMENSION = re.compile(r"([a-z_][a-z0-9_]*)\(\s*([a-z_][a-z0-9_, ]*?)\s*\)")
# A bound parameter (`:name`), not a cast (`::type`).
_PARAM = re.compile(r"(?<![:\w]):[a-z_]\w*")


class SqlModelError(Exception):
    """A model that cannot be loaded or run; the message names its file."""


@dataclass(frozen=True)
class SqlModel:
    name: str
    path: Path
    body: str
    schema: str
    materialized: str
    partition_column: str | None
    group: str
    description: str
    refs: tuple[str, ...]
    sources: tuple[tuple[str, str], ...]
    # An incremental model's dimensions: (model, columns it reads, its key first).
    incremental_on: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def table(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def partitioned(self) -> bool:
        return self.materialized == "partitioned"


def parse_model(path: Path) -> SqlModel:
    header: dict[str, str] = {}
    lines = path.read_text().splitlines()
    while lines and (match := _HEADER.match(lines[0])):
        key, value = match.groups()
        if key not in _HEADER_KEYS:
            raise SqlModelError(f"{path}: unknown header key '{key}'")
        header[key] = value
        lines.pop(0)
    body = "\n".join(lines).strip().rstrip(";")
    materialized = header.get("materialized", "table")
    if materialized not in KINDS:
        raise SqlModelError(f"{path}: materialized must be one of {', '.join(map(repr, KINDS))}")
    if materialized in ("partitioned", "incremental") and not header.get("partition_column"):
        raise SqlModelError(f"{path}: a {materialized} model needs a partition_column")
    dimensions = tuple(
        (name, tuple(c.strip() for c in columns.split(",")))
        for name, columns in _DIMENSION.findall(header.get("incremental_on", ""))
    )
    if not body:
        raise SqlModelError(f"{path}: no SQL after the header")
    if materialized == "view" and any(p.search(body) for p in (_PARAM, _TIER_RANK, _LOWEST_TIER)):
        raise SqlModelError(f"{path}: a view is stored SQL and takes no bound parameters")
    return SqlModel(
        name=path.stem,
        path=path,
        body=body,
        schema=header.get("schema", "marts"),
        materialized=materialized,
        partition_column=header.get("partition_column"),
        group=header.get("group", "warehouse"),
        description=header.get("description", ""),
        refs=tuple(dict.fromkeys(_REF.findall(body))),
        sources=tuple(dict.fromkeys(_SOURCE.findall(body))),
        incremental_on=dimensions,
    )


def load_models(folder: Path) -> dict[str, SqlModel]:
    """All models of `folder`, in dependency order; unknown refs and cycles are errors."""
    models = {m.name: m for m in map(parse_model, sorted(Path(folder).glob("*.sql")))}
    for model in models.values():
        for ref in model.refs:
            if ref not in models:
                raise SqlModelError(f"{model.path}: ref('{ref}') names no model in {folder}")
        for dimension, _ in model.incremental_on:
            if dimension not in model.refs:
                raise SqlModelError(f"{model.path}: incremental_on names {dimension}, no ref")
    try:
        order = TopologicalSorter({m.name: m.refs for m in models.values()}).static_order()
        return {name: models[name] for name in order}
    except CycleError as error:
        cycle = " -> ".join(error.args[1])
        raise SqlModelError(f"{models[error.args[1][0]].path}: ref cycle {cycle}") from error


def render(
    model: SqlModel, models: Mapping[str, SqlModel], tables: Mapping[str, str] | None = None
) -> str:
    """`model`'s SQL with its refs and macros filled in; `tables` reads other relations (a
    subquery, say) in place of the models it names."""
    tables = tables or {}
    sql = _REF.sub(lambda m: tables.get(m.group(1)) or models[m.group(1)].table, model.body)
    sql = _SOURCE.sub(lambda m: f"{m.group(1)}.{m.group(2)}", sql)
    sql = _TIER_RANK.sub(lambda m: f"array_position({_TIERS}, {m.group(1)})", sql)
    return _LOWEST_TIER.sub(f"({_TIERS})[1]", sql)


def _stage_table(conn: Connection, model: SqlModel, sql: str, params: Mapping[str, Any]) -> Staged:
    staged = staged_name(model.table)
    conn.execute(sa.text(f"CREATE TABLE {staged} AS {sql}"), params)
    rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM {staged}")).scalar()
    return Staged(model.table, staged, int(rows))


def _stage_window(
    conn: Connection, model: SqlModel, sql: str, params: Mapping[str, Any], in_place: bool = False
) -> Staged:
    """A partitioned model's window; `in_place` (nothing will audit it), written straight
    into the table in the build's transaction, as its swap would: staging would copy every
    row of the window twice, into `__next` and from there into the table."""
    # The outer filter keeps even a careless model from writing outside its window.
    window = Window(model.partition_column, params["partition_start"], params["partition_end"])
    select = f"SELECT * FROM ({sql}) q WHERE {window.inside('q')}"
    staged = model.table if in_place else staged_name(model.table)
    if in_place:
        replace_rows(conn, staged, select, {**params, **window.params}, window)
    else:
        conn.execute(sa.text(f"CREATE TABLE {staged} AS {select}"), {**params, **window.params})
    # Counted, not taken from rowcount: DuckDB's driver reports -1 for CREATE ... AS.
    rows = conn.execute(
        sa.text(f"SELECT COUNT(*) FROM {staged} WHERE {window.inside()}"), window.params
    ).scalar()
    return Staged(model.table, staged, int(rows), window)


_ATTRIBUTES = ("tier", "tier_rank", "points_balance", "marketing_opt_in")
_VERSION = f"customer_id, {', '.join(_ATTRIBUTES)}"
_SNAPSHOT_VERSION = _VERSION.replace("customer_id", "s.customer_id")
# A customer first seen in this load: known as they are back to sign-up (nothing earlier
# was recorded), or from AS_OF when the sign-up date is missing.
_FIRST_FROM = "COALESCE(LEAST(s.signup_date, CAST(:as_of AS DATE)), CAST(:as_of AS DATE))"


def _stage_history(
    conn: Connection, model: SqlModel, sql: str, params: Mapping[str, Any]
) -> Staged:
    """A slowly changing dimension: the model's SQL is the current snapshot (the attributes
    and `signup_date`), the table every version seen so far (`valid_from`, `valid_to`).

    A customer whose attributes differ from their current version gets a new version from
    AS_OF and the old one closes there; one whose current version starts on or after AS_OF
    (a re-run of the day, or of an earlier one) has it replaced, so a re-run adds nothing.
    """
    staged = staged_name(model.table)
    name = model.table.rpartition(".")[2]
    if not sa.inspect(conn).has_table(name, schema=model.schema):
        conn.execute(
            sa.text(
                f"CREATE TABLE {staged} AS SELECT {_SNAPSHOT_VERSION}, "
                f"{_FIRST_FROM} AS valid_from, CAST(NULL AS DATE) AS valid_to FROM ({sql}) s"
            ),
            params,
        )
    else:
        differs = " OR ".join(f"s.{a} IS DISTINCT FROM c.{a}" for a in _ATTRIBUTES)
        conn.execute(
            sa.text(f"""
            CREATE TABLE {staged} AS
            WITH snap AS ({sql}),
            current_version AS (SELECT * FROM {model.table} WHERE valid_to IS NULL),
            changed AS (
                SELECT c.customer_id, c.valid_from
                FROM current_version c JOIN snap s ON s.customer_id = c.customer_id
                WHERE {differs}
            )
            SELECT {", ".join(f"h.{c}" for c in _VERSION.split(", "))}, h.valid_from,
                CASE WHEN ch.customer_id IS NOT NULL THEN CAST(:as_of AS DATE)
                     ELSE h.valid_to END AS valid_to
            FROM {model.table} h
            LEFT JOIN changed ch ON ch.customer_id = h.customer_id AND h.valid_to IS NULL
            WHERE ch.customer_id IS NULL OR h.valid_from < CAST(:as_of AS DATE)
            UNION ALL
            SELECT {_SNAPSHOT_VERSION},
                CASE WHEN ch.customer_id IS NOT NULL
                     THEN GREATEST(ch.valid_from, CAST(:as_of AS DATE))
                     ELSE {_FIRST_FROM} END AS valid_from,
                CAST(NULL AS DATE) AS valid_to
            FROM snap s
            LEFT JOIN changed ch ON ch.customer_id = s.customer_id
            WHERE ch.customer_id IS NOT NULL
               OR NOT EXISTS (SELECT 1 FROM current_version c WHERE c.customer_id = s.customer_id)
            """),
            params,
        )
    rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM {staged}")).scalar()
    return Staged(model.table, staged, int(rows))


def _stage_view(conn: Connection, model: SqlModel, sql: str, params: Mapping[str, Any]) -> Staged:
    """A view holds no rows of its own: it is created in place, in this transaction, and
    its checks read it there (`staged == table`, so there is nothing to swap).

    Dropped and created rather than CREATE OR REPLACE: PostgreSQL's cannot drop, rename
    or retype a column. The previous kind's table goes the same way (a model that was a
    table before).
    """
    kind = conn.execute(
        sa.text(
            "SELECT table_type FROM information_schema.tables "
            "WHERE table_schema = :schema AND table_name = :name"
        ),
        {"schema": model.schema, "name": model.name},
    ).scalar()
    if kind is not None:
        conn.execute(sa.text(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} {model.table}"))
    conn.execute(sa.text(f"CREATE VIEW {model.table} AS {sql}"))
    rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM {model.table}")).scalar()
    return Staged(model.table, model.table, int(rows))


# How each `materialized:` kind builds beside its table. A build writes every row the
# table will hold (or, with a Window, every row of its window) into `<table>__next`; the
# audit and the swap in `staging.py` are the same for every kind (a view, built in place,
# has nothing to swap).
BUILDS: dict[str, Callable[[Connection, SqlModel, str, Mapping[str, Any]], Staged]] = {
    "table": _stage_table,
    "partitioned": _stage_window,
    "history": _stage_history,
    "view": _stage_view,
}
# And `incremental`, which also reads the other models (`_stage_incremental`).
KINDS = (*BUILDS, "incremental")


def event_sources(model: SqlModel, models: Mapping[str, SqlModel]) -> list[str]:
    """The raw entities whose loads change the model's rows: its own sources and those of
    the views it reads."""
    entities = [entity for _, entity in model.sources]
    for ref in model.refs:
        if models[ref].materialized == "view":
            entities += event_sources(models[ref], models)
    return list(dict.fromkeys(entities))


def _fingerprint(model: SqlModel, models: Mapping[str, SqlModel], sql: str, params) -> str:
    """What an incremental model's rows depend on besides the data: its SQL and its views'
    (whose rows it reads), the parameters the SQL takes, what it is incremental on."""
    views = [render(models[r], models) for r in model.refs if models[r].materialized == "view"]
    taken = sorted((name, repr(params.get(name[1:]))) for name in set(_PARAM.findall(sql)))
    facts = repr((sql, views, taken, model.partition_column, model.incremental_on))
    return hashlib.sha256(facts.encode()).hexdigest()


def _last_build(conn: Connection, model: SqlModel, fingerprint: str) -> int:
    """The last load an incremental model's serving table was built from (0: unknown, or
    built from other SQL or parameters, or without its record)."""
    names = [model.name, f"{model.name}__state"]
    names += [f"{model.name}__seen_{dimension}" for dimension, _ in model.incremental_on]
    inspector = sa.inspect(conn)
    if not all(inspector.has_table(name, schema=model.schema) for name in names):
        return 0
    row = conn.execute(sa.text(f"SELECT seq, fingerprint FROM {model.table}__state")).first()
    if row is None or row.fingerprint != fingerprint:
        return 0
    return int(row.seq or 0)


def _stage_incremental(
    conn: Connection,
    model: SqlModel,
    models: Mapping[str, SqlModel],
    sql: str,
    params: Mapping[str, Any],
) -> Staged:
    """An incremental model: each row comes from one event row (dated by the model's
    partition column, as its raw table is) and from the rows of its `incremental_on`
    dimensions with the row's key. So once built, only two kinds of rows can change:
    those in the windows the loads replaced since (`load_log.py`), and those of keys whose
    dimension columns changed (compared with a copy kept from the last build). The build
    holds exactly those rows (a `Slice`), and the swap replaces them.

    The first build, a whole table reloaded, an unknown state (nothing logged) or other
    SQL or parameters than the last build's build the whole table. The record of what the
    build read (the last load, the dimensions' copies) is swapped in with it, so a
    rejected build leaves the next one to rebuild the same rows and more.
    """
    staged = staged_name(model.table)
    entities = event_sources(model, models)
    fingerprint = _fingerprint(model, models, sql, params)
    upto = latest_seq(conn, entities)
    last = _last_build(conn, model, fingerprint) if upto else 0
    if last > upto:  # the log was started again: what it numbered before is unknown
        last = 0
    windows = windows_since(conn, entities, last, upto) if last else [None]
    after_swap: list[tuple[str, dict[str, Any]]] = []
    window = None
    if None in windows:
        conn.execute(sa.text(f"CREATE TABLE {staged} AS {sql}"), params)
    else:
        keys = []
        for dimension, columns in model.incremental_on:
            changed = f"{model.table}__changed_{dimension}"
            seen, table, listed = (
                f"{model.table}__seen_{dimension}",
                models[dimension].table,
                ", ".join(columns),
            )
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {changed}"))
            conn.execute(
                sa.text(
                    f"CREATE TABLE {changed} AS SELECT DISTINCT {columns[0]} FROM ("
                    f"(SELECT {listed} FROM {table} EXCEPT SELECT {listed} FROM {seen}) "
                    f"UNION ALL (SELECT {listed} FROM {seen} EXCEPT SELECT {listed} FROM {table})"
                    ") d"
                )
            )
            after_swap.append((f"DROP TABLE {changed}", {}))
            if conn.execute(sa.text(f"SELECT COUNT(*) FROM {changed}")).scalar():
                keys.append((columns[0], changed))
        window = Slice(model.partition_column, tuple(windows), tuple(keys))
        # Two scans rather than one with OR: a range alone reaches the raw table's scan.
        parts = [f"SELECT * FROM ({sql}) q WHERE {window.in_ranges('q')}"]
        if window.keys:
            parts.append(
                f"SELECT * FROM ({sql}) q WHERE NOT COALESCE({window.in_ranges('q')}, FALSE) "
                f"AND {window.of_keys('q')}"
            )
        conn.execute(
            sa.text(f"CREATE TABLE {staged} AS {' UNION ALL '.join(parts)}"),
            {**params, **window.params},
        )
    for dimension, columns in model.incremental_on:
        seen = f"{model.table}__seen_{dimension}"
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {seen}__next"))
        conn.execute(
            sa.text(
                f"CREATE TABLE {seen}__next AS "
                f"SELECT {', '.join(columns)} FROM {models[dimension].table}"
            )
        )
        after_swap += [
            (f"DROP TABLE IF EXISTS {seen}", {}),
            (f"ALTER TABLE {seen}__next RENAME TO {seen.rpartition('.')[2]}", {}),
        ]
    state = f"{model.table}__state"
    after_swap += [
        (f"DROP TABLE IF EXISTS {state}", {}),
        (f"CREATE TABLE {state} (seq BIGINT, fingerprint VARCHAR)", {}),
        (
            f"INSERT INTO {state} VALUES (:seq, :fingerprint)",
            {"seq": upto, "fingerprint": fingerprint},
        ),
    ]
    rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM {staged}")).scalar()
    return Staged(model.table, staged, int(rows), window, tuple(after_swap))


def stage(
    warehouse: Warehouse,
    model: SqlModel,
    models: Mapping[str, SqlModel],
    params: Mapping[str, Any],
    in_place: bool = False,
) -> Staged:
    """Build `model` into `<table>__next`, in one transaction; readers still see the table.
    `in_place`: no audit will read the build, so a partitioned model writes its window
    into the table (`_stage_window`)."""
    sql = render(model, models)
    incremental = model.materialized == "incremental"
    try:
        with warehouse.begin() as conn:
            if incremental and warehouse.dialect == "postgresql":
                # The log, the dimensions and the rows read in one snapshot: a load or a
                # dimension swapped in meanwhile is the next build's.
                conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {model.schema}"))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {staged_name(model.table)}"))
            if incremental:
                return _stage_incremental(conn, model, models, sql, params)
            if in_place and model.partitioned:
                return _stage_window(conn, model, sql, params, in_place=True)
            return BUILDS[model.materialized](conn, model, sql, params)
    except sa.exc.DBAPIError as error:
        raise SqlModelError(f"{model.path}: {error.orig}") from error


def materialize(
    warehouse: Warehouse,
    model: SqlModel,
    models: Mapping[str, SqlModel],
    params: Mapping[str, Any],
    audit: Audit | None = None,
) -> Built:
    """Write, audit, publish `model`: build it beside its table, and swap it in (the
    whole table, or a partitioned model's window) only if `audit` approves the build;
    without an audit nothing can reject it, and a window is written in place."""
    build = partial(stage, warehouse, model, models, params, audit is None)
    try:
        return write_audit_swap(warehouse, model.table, build, audit)
    except sa.exc.DBAPIError as error:
        raise SqlModelError(f"{model.path}: {error.orig}") from error


# `reward_assets/sql` links to the project's dbt_like_sql/ and is package data, so the
# models are found the same way in a checkout, an editable install and a wheel.
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
