"""The model registry on the operational store: SQLite (the default) and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from reward_assets.ml.registry import (
    APPROVED,
    CANDIDATE,
    REJECTED,
    ModelRegistry,
    NoServingModel,
    model_version,
)
from reward_assets.ops.store import open_ops_store

AS_OF = dt.date(2023, 8, 27)


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ops.sqlite'}"
        with open_ops_store(url) as store:
            yield ModelRegistry(store, tmp_path / "models")
        return
    from reward_assets_tests.conftest import fresh_database

    server = request.getfixturevalue("pg_server_url")
    with fresh_database(server) as url, open_ops_store(url) as store:
        yield ModelRegistry(store, tmp_path / "models")


def writer(payload: str):
    def save(folder: Path) -> None:
        (folder / "model.txt").write_text(payload)

    return save


def register(registry: ModelRegistry, data: str, params: dict | None = None):
    return registry.register(
        "churn_model",
        fingerprint=data,
        save=writer(data),
        metrics={"roc_auc": 0.81},
        features=["recency_days"],
        params=params or {"depth": 4},
        trained_as_of=AS_OF,
    )


def test_a_version_is_the_hash_of_data_and_parameters(registry):
    first = register(registry, "data-1")
    again = register(registry, "data-1")
    other_data = register(registry, "data-2")
    other_params = register(registry, "data-1", {"depth": 6})

    assert first.version == again.version == model_version("churn_model", "data-1", {"depth": 4})
    assert len({first.version, other_data.version, other_params.version}) == 3
    # Registering the same version again replaces its row and folder, never duplicates.
    assert len(registry.history("churn_model")) == 3
    assert sorted(p.name for p in (registry.root / "churn_model").iterdir()) == sorted(
        {first.version, other_data.version, other_params.version}
    )


def test_artefacts_carry_model_metrics_and_features(registry):
    record = register(registry, "data-1")

    assert record.status == CANDIDATE and record.trained_as_of == AS_OF
    assert (record.artefact_path / "model.txt").read_text() == "data-1"
    manifest = json.loads((record.artefact_path / "manifest.json").read_text())
    assert manifest["version"] == record.version
    assert manifest["metrics"] == {"roc_auc": 0.81}
    assert manifest["features"] == ["recency_days"]


def test_serving_is_the_latest_approved_and_a_rejection_keeps_it(registry):
    with pytest.raises(NoServingModel, match="materialise churn_model"):
        registry.serving("churn_model")

    good = register(registry, "good")
    registry.decide("churn_model", good.version, approved=True, reasons=[])
    bad = register(registry, "shuffled")
    bad = registry.decide("churn_model", bad.version, approved=False, reasons=["AUC 0.50"])

    assert bad.status == REJECTED and bad.reasons == ["AUC 0.50"]
    serving = registry.serving("churn_model")
    assert serving.version == good.version and serving.status == APPROVED

    better = register(registry, "better")
    registry.decide("churn_model", better.version, approved=True, reasons=[])
    assert registry.serving("churn_model").version == better.version


def test_a_failed_save_leaves_no_folder_and_no_row(registry):
    def broken(folder: Path) -> None:
        (folder / "half-written").write_text("x")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        registry.register("churn_model", "data", broken, {}, [], {})

    assert registry.history("churn_model") == []
    assert list((registry.root / "churn_model").iterdir()) == []
