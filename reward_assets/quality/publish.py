"""Write, audit, publish for every served and cleaned table: a SQL model of dbt_like_sql/
or a table a Python asset writes is built beside the table readers see, its declared
checks run on that build, and only if no blocking check fails is it swapped in and its
snapshot published. A failed blocking check leaves the previous table and snapshot
serving, and the build in `<table>__next` for inspection (`warehouse/staging.py`).

A view (`materialized: view`) has no previous version to keep: it always reads its
sources. So a model built from views runs their blocking checks too, on the views as they
read at its build, and a failed one keeps the model's previous table as its own would.
They run once per state of the view's sources: a pass is remembered with the last load
of those sources (`warehouse/load_log.py`) and with what else decides the outcome (the
view's SQL, its checks, the run's parameters), and a model whose build read that same
state takes it rather than reading the whole view again.

The run's parameters change every day, so each day's first build checks the view again.
A unique rule takes none: its pass is remembered on its own, and when the loads since
replaced only windows of a view with a `partition_column`, the rows outside them are the
ones that passed, so the rule reads just the windows' values (missing, repeated, or
shared with a row outside). Anything found there runs the whole rule, so a failure
reports exactly what it reports today. A row rule's pass is remembered with the parameters
but the period's end, which only admits more rows as it grows (`checks.GROWING_PARAMS`):
under the same others and an end no earlier, the rule reads just the windows loaded since,
and what fails there fails the rule (counted from the windows).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from reward_assets.quality.checks import (
    GROWING_PARAMS,
    MAX_EXAMPLES,
    CheckOutcome,
    TableCheck,
    checks_path,
    load_checks,
    run_checks,
    table_checks_path,
)
from reward_assets.warehouse.load_log import latest_seq, windows_since
from reward_assets.warehouse.snapshots import SERVED_TABLES, publish
from reward_assets.warehouse.sql_models import SqlModel, SqlModelError, materialize
from reward_assets.warehouse.staging import (
    Built,
    Carry,
    Slice,
    Staged,
    Window,
    stage_frames,
    write_audit_swap,
)
from reward_assets.warehouse.store import Warehouse

# Views whose blocking checks passed, with the state they passed on.
VIEW_CHECKS_TABLE = "staging.view_checks"
VIEW_CHECKS_COLUMNS = {"view_name": "VARCHAR", "state": "VARCHAR", "seq": "BIGINT"}


@dataclass(frozen=True)
class ViewAudit:
    """A view's blocking checks, and the state a model's build read the view in."""

    view: SqlModel
    checks: Sequence[TableCheck]
    # What the outcome depends on besides the rows: the view's SQL, its checks, the
    # parameters the checks take.
    state: str
    seq: int  # the last load of the view's sources before the build (0: not logged)

    @classmethod
    def before_build(
        cls, warehouse: Warehouse, view: SqlModel, params: Mapping[str, Any]
    ) -> ViewAudit:
        path = checks_path(view)
        declared = path.read_text() if path.exists() else ""
        facts = repr((view.body, declared, sorted(params.items())))
        checks = [c for c in load_checks(path) if c.blocking]
        state = hashlib.sha256(facts.encode()).hexdigest()
        return cls(view, checks, state, _sources_seq(warehouse, view))

    def passed_before(self, warehouse: Warehouse) -> bool:
        """Whether these checks passed on the very rows the build read."""
        if not self.seq or not warehouse.table_exists(VIEW_CHECKS_TABLE):
            return False
        found = warehouse.scalar(
            f"SELECT COUNT(*) FROM {VIEW_CHECKS_TABLE} "
            "WHERE view_name = :view AND state = :state AND seq = :seq",
            {"view": self.view.name, "state": self.state, "seq": self.seq},
        )
        return bool(found) and _sources_seq(warehouse, self.view) == self.seq

    def remember_pass(self, warehouse: Warehouse) -> None:
        """Record a pass, unless a load of the sources came between the build and now."""
        self._remember(warehouse, self.view.name, self.state)

    def _remember(self, warehouse: Warehouse, name: str, state: str) -> None:
        if not self.seq or _sources_seq(warehouse, self.view) != self.seq:
            return
        warehouse.create_table(VIEW_CHECKS_TABLE, VIEW_CHECKS_COLUMNS)
        with warehouse.begin() as conn:
            key = {"view": name, "state": state, "seq": self.seq}
            conn.execute(sa.text(f"DELETE FROM {VIEW_CHECKS_TABLE} WHERE view_name = :view"), key)
            conn.execute(
                sa.text(f"INSERT INTO {VIEW_CHECKS_TABLE} VALUES (:view, :state, :seq)"), key
            )

    def run(
        self, warehouse: Warehouse, checks: Sequence[TableCheck], params: Mapping[str, Any]
    ) -> dict[str, CheckOutcome]:
        """`checks` on the view as it reads now (see the module's docstring)."""
        view = self.view
        kept = [c for c in checks if c.unique and self.unique_still_holds(warehouse, c)]
        outcomes = self.row_rules_since(warehouse, [c for c in checks if c.expectations], params)
        vouched = [c.name for c in kept] + list(outcomes)
        rest = [c for c in checks if c.name not in vouched]
        outcomes |= run_checks(warehouse, rest, Staged(view.table, view.table, 0), params)
        outcomes |= {c.name: CheckOutcome(True, 0, 0) for c in kept}
        if vouched:  # for the rows outside what they read too: as many as the view has
            rows = int(warehouse.scalar(f"SELECT COUNT(*) FROM {view.table}"))
            for name in vouched:
                outcomes[name].checked_rows = rows
        for check in checks:
            if check.unique and outcomes[check.name].passed:
                self._remember(warehouse, *_unique_key(view, check))
            elif check.expectations and outcomes[check.name].passed:
                name, state = _row_key(view, check, params)
                self._remember(warehouse, name, f"{state} {json.dumps(_ends(params))}")
        return outcomes

    def row_rules_since(
        self, warehouse: Warehouse, checks: Sequence[TableCheck], params: Mapping[str, Any]
    ) -> dict[str, CheckOutcome]:
        """The row rules' outcomes read on the windows loaded since they all last passed,
        under the same parameters but for the period's end, no larger then than now
        (`checks.GROWING_PARAMS`): the rows outside those windows are the ones that passed.
        Empty when one of them has to read the whole view; `run` counts the rows checked."""
        view = self.view
        if not (checks and self.seq and view.partition_column):
            return {}
        if not warehouse.table_exists(VIEW_CHECKS_TABLE):
            return {}
        passes = []
        for check in checks:
            name, state = _row_key(view, check, params)
            found = warehouse.frame(
                f"SELECT state, seq FROM {VIEW_CHECKS_TABLE} WHERE view_name = :view",
                {"view": name},
            )
            if found.empty:
                return {}
            digest, _, ends = str(found.state.iloc[0]).partition(" ")
            if digest != state or not _grown(json.loads(ends), _ends(params)):
                return {}
            passes.append(int(found.seq.iloc[0]))
        last = min(passes)
        if last > self.seq:  # the log was started again
            return {}
        with warehouse.engine.connect() as conn:
            windows = windows_since(conn, [e for _, e in view.sources], last, self.seq)
        if None in windows:  # a load replaced the whole table
            return {}
        outcomes = {c.name: CheckOutcome(True, 0, 0) for c in checks}
        for start, end in windows:
            loaded = Staged(view.table, view.table, 0, Window(view.partition_column, start, end))
            for name, found in run_checks(warehouse, checks, loaded, params).items():
                total = outcomes[name]
                total.passed &= found.passed
                total.failing_rows += found.failing_rows
                total.examples += found.examples[: MAX_EXAMPLES - len(total.examples)]
        # A load committed meanwhile may have changed rows outside the windows read.
        return outcomes if _sources_seq(warehouse, view) == self.seq else {}

    def unique_still_holds(self, warehouse: Warehouse, check: TableCheck) -> bool:
        """Whether the unique rule's last pass holds still: the loads since replaced only
        windows, whose values are all present and held by one row each."""
        view, (name, state) = self.view, _unique_key(self.view, check)
        if not (self.seq and view.partition_column and warehouse.table_exists(VIEW_CHECKS_TABLE)):
            return False
        last = warehouse.scalar(
            f"SELECT seq FROM {VIEW_CHECKS_TABLE} WHERE view_name = :view AND state = :state",
            {"view": name, "state": state},
        )
        if not last or last > self.seq:  # never passed, or the log was started again
            return False
        with warehouse.engine.connect() as conn:
            windows = windows_since(conn, [e for _, e in view.sources], last, self.seq)
        if None in windows:  # a load replaced the whole table
            return False
        loaded = Slice(view.partition_column, tuple(windows), ())
        column, outside = check.column, f"NOT COALESCE({loaded.in_ranges('v')}, FALSE)"
        # A join, not EXISTS: the windows' few values are what the database hashes.
        found = warehouse.scalar(
            f"WITH loaded AS (SELECT {column} AS value FROM {view.table} "
            f"WHERE {loaded.in_ranges()}) "
            "SELECT (SELECT COUNT(*) FROM (SELECT value FROM loaded GROUP BY value "
            "HAVING COUNT(*) > 1 OR value IS NULL) d) + "
            f"(SELECT COUNT(*) FROM {view.table} v JOIN loaded l ON l.value = v.{column} "
            f"WHERE {outside})",
            loaded.params,
        )
        # A load committed meanwhile may have changed rows outside the windows read.
        return found == 0 and _sources_seq(warehouse, view) == self.seq


def _unique_key(view: SqlModel, check: TableCheck) -> tuple[str, str]:
    """Where a unique rule's pass is remembered, and what it depends on besides the rows."""
    facts = repr((view.body, view.partition_column, check.name, check.column))
    return f"{view.name}:{check.name}", hashlib.sha256(facts.encode()).hexdigest()


def _row_key(view: SqlModel, check: TableCheck, params: Mapping[str, Any]) -> tuple[str, str]:
    """Where a row rule's pass is remembered, and what it depends on besides the rows and
    the period's end."""
    fixed = sorted((k, repr(v)) for k, v in params.items() if k not in GROWING_PARAMS)
    facts = repr((view.body, view.partition_column, check.name, check.declared, fixed))
    return f"{view.name}:{check.name}", hashlib.sha256(facts.encode()).hexdigest()


def _ends(params: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(params[k]) for k in GROWING_PARAMS if k in params}


def _grown(then: Mapping[str, str], now: Mapping[str, str]) -> bool:
    """Whether every end of the period is where it was or later (ISO text of one type per
    parameter, which sorts as the values do)."""
    return then.keys() == now.keys() and all(now[k] >= then[k] for k in now)


def _sources_seq(warehouse: Warehouse, view: SqlModel) -> int:
    with warehouse.engine.connect() as conn:
        return latest_seq(conn, [entity for _, entity in view.sources])


@dataclass
class Auditor:
    """Runs a table's checks on a build; approves it unless a blocking check fails."""

    warehouse: Warehouse
    checks: Sequence[TableCheck]
    params: Mapping[str, Any]
    source: Path  # where the checks are declared, named when one cannot run
    # The views the build reads, with their blocking checks (see the module's docstring).
    views: Sequence[ViewAudit] = ()
    itself: ViewAudit | None = None  # the build is this view's
    outcomes: dict[str, CheckOutcome] = field(default_factory=dict)
    views_failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __call__(self, staged: Staged) -> bool:
        started = time.perf_counter()
        try:
            if self.itself:
                self.outcomes = self.itself.run(self.warehouse, self.checks, self.params)
            else:
                self.outcomes = run_checks(self.warehouse, self.checks, staged, self.params)
            self.views_failed = []
            for audit in self.views:
                if audit.passed_before(self.warehouse):
                    continue
                outcomes = audit.run(self.warehouse, audit.checks, self.params)
                failed = [f"{audit.view.name}:{n}" for n, o in outcomes.items() if not o.passed]
                if not failed:
                    audit.remember_pass(self.warehouse)
                self.views_failed += failed
        except sa.exc.DBAPIError as error:
            raise SqlModelError(f"{self.source}: a check could not run: {error.orig}") from error
        finally:
            self.seconds = time.perf_counter() - started
        failed = any(not self.outcomes[c.name].passed for c in self.checks if c.blocking)
        return not failed and not self.views_failed


@dataclass(frozen=True)
class Audited:
    """A build, its checks and their outcomes, and whether it now serves."""

    built: Built
    checks: Sequence[TableCheck]
    outcomes: Mapping[str, CheckOutcome]
    check_seconds: float
    views_failed: Sequence[str] = ()  # `view:check`, blocking checks of the views it read

    @property
    def table(self) -> str:
        return self.built.staged.table

    @property
    def rows(self) -> int:
        return self.built.rows

    @property
    def published(self) -> bool:
        return self.built.published

    @property
    def blocked_by(self) -> list[str]:
        own = [c.name for c in self.checks if c.blocking and not self.outcomes[c.name].passed]
        return [*own, *self.views_failed]

    def metadata(self) -> dict[str, Any]:
        """What an asset records about the audit (no personal data: counts and names)."""
        metadata: dict[str, Any] = {"published": self.published}
        if self.checks:
            metadata["check_seconds"] = round(self.check_seconds, 3)
        if not self.published:
            metadata["blocked_by"] = ", ".join(self.blocked_by)
            metadata["rejected_build"] = self.built.staged.staged
        return metadata


def _published(warehouse: Warehouse, built: Built, auditor: Auditor, data_dir: Path) -> Audited:
    """Publish the snapshot of an approved served table; a rejected one keeps the old."""
    if built.published and built.staged.table in SERVED_TABLES:
        publish(warehouse, built.staged.table, data_dir)
    return Audited(
        built, auditor.checks, auditor.outcomes, auditor.seconds, tuple(auditor.views_failed)
    )


def build_model(
    warehouse: Warehouse,
    model: SqlModel,
    models: Mapping[str, SqlModel],
    params: Mapping[str, Any],
    data_dir: Path,
) -> Audited:
    """Build a SQL model beside its table, check it, and swap it in and publish it only
    if no blocking check of its `<model>.yml` fails."""
    path = checks_path(model)
    views = [models[ref] for ref in model.refs if models[ref].materialized == "view"]
    view_audits = [ViewAudit.before_build(warehouse, v, params) for v in views]
    is_view = model.materialized == "view"
    itself = ViewAudit.before_build(warehouse, model, params) if is_view else None
    auditor = Auditor(warehouse, load_checks(path), params, path, view_audits, itself)
    # A partitioned model with no checks and no views to check cannot be rejected: there
    # is nothing to stage its window for.
    unchecked = model.partitioned and not auditor.checks and not view_audits
    built = materialize(warehouse, model, models, params, None if unchecked else auditor)
    if itself and built.published:
        # The marts that read the view in this state need not check it again.
        itself.remember_pass(warehouse)
    return _published(warehouse, built, auditor, data_dir)


def replace_served(
    warehouse: Warehouse,
    table: str,
    columns: Mapping[str, str],
    chunks: Iterable[pd.DataFrame],
    data_dir: Path,
    params: Mapping[str, Any] | None = None,
    carry: Carry | None = None,
) -> Audited:
    """Rebuild a table a Python asset writes (columns: name -> SQL type) from `chunks`
    and the served rows `carry` keeps beside the served one, check it against
    `dbt_like_sql/<name>.yml`, and swap it in and publish its snapshot only if no
    blocking check fails."""
    path = table_checks_path(table)
    auditor = Auditor(warehouse, load_checks(path), params or {}, path)
    build = partial(stage_frames, warehouse, table, columns, chunks, carry)
    built = write_audit_swap(warehouse, table, build, auditor)
    return _published(warehouse, built, auditor, data_dir)
