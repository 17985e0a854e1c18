"""The model registry: versioned artefacts on disk, one row per version in the ops store.

A version is the content hash of the training data and the parameters, so retraining on
the same data re-registers the same version instead of adding a copy. A version starts as
a candidate; the model's blocking check approves or rejects it, and scoring only ever
loads the latest approved version, so a bad retrain leaves the previous good model in
service.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reward_assets.ops.store import OpsStore, model_registry, stored_now

CANDIDATE, APPROVED, REJECTED = "candidate", "approved", "rejected"


class NoServingModel(LookupError):
    pass


@dataclass(frozen=True)
class ModelRecord:
    name: str
    version: str
    status: str
    created_at: dt.datetime
    decided_at: dt.datetime | None
    artefact_path: Path
    trained_as_of: dt.date | None
    metrics: dict[str, Any]
    features: list[str]
    params: dict[str, Any]
    reasons: list[str] | None


def model_version(name: str, fingerprint: str, params: Mapping[str, Any]) -> str:
    payload = json.dumps({"name": name, "data": fingerprint, "params": params}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


class ModelRegistry:
    def __init__(self, store: OpsStore, root: Path):
        self.store = store
        self.root = Path(root)

    def register(
        self,
        name: str,
        fingerprint: str,
        save: Callable[[Path], None],
        metrics: Mapping[str, Any],
        features: list[str],
        params: Mapping[str, Any],
        trained_as_of: dt.date | None = None,
    ) -> ModelRecord:
        """Write the artefact folder atomically and record the version as a candidate."""
        version = model_version(name, fingerprint, params)
        target = self.root / name / version
        staging = self.root / name / f".staging-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            save(staging)
            manifest = {
                "name": name,
                "version": version,
                "trained_as_of": trained_as_of.isoformat() if trained_as_of else None,
                "metrics": dict(metrics),
                "features": list(features),
                "params": dict(params),
            }
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        row = {
            "name": name,
            "version": version,
            "status": CANDIDATE,
            "created_at": stored_now(),
            "decided_at": None,
            "artefact_path": str(target),
            "trained_as_of": trained_as_of,
            "metrics": json.loads(json.dumps(dict(metrics), default=str)),
            "features": list(features),
            "params": json.loads(json.dumps(dict(params), default=str)),
            "reasons": None,
        }
        with self.store.begin() as conn:
            conn.execute(self._where(model_registry.delete(), name, version))
            conn.execute(model_registry.insert().values(**row))
        return self.get(name, version)

    def decide(self, name: str, version: str, approved: bool, reasons: list[str]) -> ModelRecord:
        with self.store.begin() as conn:
            conn.execute(
                self._where(model_registry.update(), name, version).values(
                    status=APPROVED if approved else REJECTED,
                    decided_at=stored_now(),
                    reasons=list(reasons),
                )
            )
        return self.get(name, version)

    def get(self, name: str, version: str) -> ModelRecord:
        records = self._select(
            self._where(sa.select(model_registry), name, version), f"{name} {version}"
        )
        return records[0]

    def serving(self, name: str) -> ModelRecord:
        """The latest approved version of `name`."""
        query = (
            sa.select(model_registry)
            .where(model_registry.c.name == name, model_registry.c.status == APPROVED)
            .order_by(model_registry.c.decided_at.desc())
            .limit(1)
        )
        records = self._select(query, None)
        if not records:
            raise NoServingModel(
                f"no approved {name} in the model registry: materialise {name} "
                "(its check approves it) before scoring"
            )
        return records[0]

    def history(self, name: str | None = None) -> list[ModelRecord]:
        query = sa.select(model_registry).order_by(model_registry.c.created_at)
        if name:
            query = query.where(model_registry.c.name == name)
        return self._select(query, None)

    @staticmethod
    def _where(statement, name: str, version: str):
        return statement.where(model_registry.c.name == name, model_registry.c.version == version)

    def _select(self, query, missing: str | None) -> list[ModelRecord]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        if missing and not rows:
            raise NoServingModel(f"no model {missing} in the registry")
        return [ModelRecord(**{**row, "artefact_path": Path(row["artefact_path"])}) for row in rows]
