"""Write, audit, publish for every served and cleaned table: a SQL model of dbt_like_sql/
or a table a Python asset writes is built beside the table readers see, its declared
checks run on that build, and only if no blocking check fails is it swapped in and its
snapshot published. A failed blocking check leaves the previous table and snapshot
serving, and the build in `<table>__next` for inspection (`warehouse/staging.py`).

A view (`materialized: view`) has no previous version to keep: it always reads its
sources. So a model built from views runs their blocking checks too, on the views as they
read at its build, and a failed one keeps the model's previous table as its own would.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from reward_assets.quality.checks import (
    CheckOutcome,
    TableCheck,
    checks_path,
    load_checks,
    run_checks,
    table_checks_path,
)
from reward_assets.warehouse.snapshots import SERVED_TABLES, publish
from reward_assets.warehouse.sql_models import SqlModel, SqlModelError, materialize
from reward_assets.warehouse.staging import Built, Staged, stage_frames, write_audit_swap
from reward_assets.warehouse.store import Warehouse


@dataclass
class Auditor:
    """Runs a table's checks on a build; approves it unless a blocking check fails."""

    warehouse: Warehouse
    checks: Sequence[TableCheck]
    params: Mapping[str, Any]
    source: Path  # where the checks are declared, named when one cannot run
    # The views the build reads, with their blocking checks (see the module's docstring).
    views: Sequence[tuple[SqlModel, Sequence[TableCheck]]] = ()
    outcomes: dict[str, CheckOutcome] = field(default_factory=dict)
    views_failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __call__(self, staged: Staged) -> bool:
        started = time.perf_counter()
        try:
            self.outcomes = run_checks(self.warehouse, self.checks, staged, self.params)
            self.views_failed = [
                f"{view.name}:{name}"
                for view, checks in self.views
                for name, outcome in run_checks(
                    self.warehouse, checks, Staged(view.table, view.table, 0), self.params
                ).items()
                if not outcome.passed
            ]
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
    view_checks = [(v, [c for c in load_checks(checks_path(v)) if c.blocking]) for v in views]
    auditor = Auditor(warehouse, load_checks(path), params, path, view_checks)
    built = materialize(warehouse, model, models, params, auditor)
    return _published(warehouse, built, auditor, data_dir)


def replace_served(
    warehouse: Warehouse,
    table: str,
    columns: Mapping[str, str],
    chunks: Iterable[pd.DataFrame],
    data_dir: Path,
    params: Mapping[str, Any] | None = None,
) -> Audited:
    """Rebuild a table a Python asset writes (columns: name -> SQL type) from `chunks`
    beside the served one, check it against `dbt_like_sql/<name>.yml`, and swap it in and
    publish its snapshot only if no blocking check fails."""
    path = table_checks_path(table)
    auditor = Auditor(warehouse, load_checks(path), params or {}, path)
    build = partial(stage_frames, warehouse, table, columns, chunks)
    built = write_audit_swap(warehouse, table, build, auditor)
    return _published(warehouse, built, auditor, data_dir)
