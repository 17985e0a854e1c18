"""The model and scoring assets through Dagster, on the default seeded world.

Checks what a UI user relies on: every customer scored from an approved, traceable model
version; history days written once however often scoring re-runs; and a retrain that
fails its blocking check leaving the previous good models and their outputs in service.
"""

from __future__ import annotations

import json

from reward_assets.ml.registry import APPROVED, REJECTED, ModelRegistry
from reward_assets.ops.store import open_ops_store
from reward_assets.settings import Settings

MODELS = {"taste_model", "churn_model", "engagement_model"}


def registry_versions(data_dir) -> dict[str, list[tuple[str, str]]]:
    with open_ops_store(f"sqlite:///{data_dir / 'ops.sqlite'}") as store:
        registry = ModelRegistry(store, data_dir / "models")
        history = registry.history()
        serving = {name: registry.serving(name).version for name in MODELS}
    found: dict[str, list[tuple[str, str]]] = {}
    for record in history:
        found.setdefault(record.name, []).append((record.version, record.status))
    return {"serving": serving, **found}


def test_every_model_is_approved_and_every_score_traces_to_it(scored):
    _, warehouse, data_dir = scored
    versions = registry_versions(data_dir)

    assert set(versions) == MODELS | {"serving"}
    for name in MODELS:
        assert versions[name] == [(versions["serving"][name], APPROVED)]
    used = {
        "taste_model": "SELECT DISTINCT model_version FROM ml.recommendation_sets",
        "churn_model": "SELECT DISTINCT model_version FROM ml.churn_scores",
        "engagement_model": "SELECT DISTINCT model_version FROM ml.send_time_preferences",
    }
    for name, sql in used.items():
        assert warehouse.frame(sql).model_version.tolist() == [versions["serving"][name]]


def test_the_models_record_their_learning_curve(scored):
    _, _, data_dir = scored
    with open_ops_store(f"sqlite:///{data_dir / 'ops.sqlite'}") as store:
        registry = ModelRegistry(store, data_dir / "models")
        records = [registry.serving(name) for name in ("churn_model", "engagement_model")]
    for record in records:
        curve = record.metrics["learning_curve"]
        # Under TRAINING_MAX_ROWS: one fit, on every training row.
        assert curve["sizes"] == [curve["rows_available"]] == [record.metrics["train_rows"]]
        assert curve["chosen_rows"] == record.metrics["train_rows"] > 1000
        assert curve["max_rows"] == Settings().training_max_rows
        manifest = json.loads((record.artefact_path / "manifest.json").read_text())
        assert manifest["metrics"]["learning_curve"] == curve


def test_every_customer_gets_scores_and_eligible_recommendations(scored):
    _, warehouse, _ = scored
    customers = warehouse.scalar("SELECT COUNT(*) FROM marts.dim_customers")

    assert warehouse.row_count("ml.send_time_preferences") == customers
    assert warehouse.row_count("ml.engagement_scores") == customers
    assert (
        warehouse.scalar(
            "SELECT COUNT(*) FROM ml.send_time_preferences WHERE best_local_hour >= 21 "
            "OR best_local_hour < 8"
        )
        == 0
    )
    sets = warehouse.frame(
        """
        SELECT s.*, r.is_available, r.min_tier_rank, r.points_cost, c.tier_rank,
               c.points_balance
        FROM ml.recommendation_sets s
        JOIN marts.dim_rewards r USING (reward_id)
        JOIN marts.dim_customers c USING (customer_id)
        """
    )
    per_customer = sets.groupby("customer_id")
    assert per_customer.size().max() == Settings().recommendations_k
    assert sets.customer_id.nunique() > 0.8 * customers
    assert (per_customer["rank"].min() == 1).all()
    assert sets.is_available.all()
    assert (sets.min_tier_rank.fillna(1) <= sets.tier_rank.fillna(1)).all()
    affordable = sets.points_cost <= sets.points_balance.fillna(0)
    assert (affordable | sets.is_almost_there).all()
    assert sets.reason.str.len().gt(0).all()


def test_rescoring_the_day_replaces_its_history_instead_of_adding_to_it(scored):
    run, warehouse, _ = scored
    before = {t: warehouse.row_count(t) for t in ("ml.score_history", "ml.recommendation_log")}
    assert before["ml.score_history"] == warehouse.row_count("ml.churn_scores")
    assert before["ml.recommendation_log"] == warehouse.row_count("ml.recommendation_sets")

    summary = run("scoring")

    assert summary.success, summary
    assert {t: warehouse.row_count(t) for t in before} == before
    assert warehouse.scalar("SELECT COUNT(DISTINCT as_of) FROM ml.score_history") == 1


def test_a_retrain_on_shuffled_labels_is_rejected_and_the_good_models_stay(scored):
    run, warehouse, data_dir = scored
    good = registry_versions(data_dir)["serving"]
    outputs = {
        table: warehouse.frame(f"SELECT * FROM {table} ORDER BY 1, 2, 3")
        for table in ("ml.recommendation_sets",)
    }
    # Redeemed rewards are the ranking's labels. (Shuffled churn labels are rejected by
    # the same registry path: test_churn.py shows churn_quality failing on them.) The
    # true ones come back afterwards: later tests read this session's scored world.
    with warehouse.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE marts.true_redemptions AS FROM marts.fct_redemptions")
        conn.exec_driver_sql(
            "CREATE OR REPLACE TABLE marts.fct_redemptions AS "
            "SELECT * REPLACE (COALESCE(LEAD(reward_id) OVER (ORDER BY hash(redemption_id)), "
            "reward_id) AS reward_id) FROM marts.fct_redemptions"
        )
    try:
        # Shuffled labels keep popularity's nDCG: the stricter bar rejects them.
        summary = run("ml", "scoring", extra={"RANKING_MIN_LIFT": "1.2"})
    finally:
        with warehouse.begin() as conn:
            conn.exec_driver_sql(
                "CREATE OR REPLACE TABLE marts.fct_redemptions AS FROM marts.true_redemptions"
            )
            conn.exec_driver_sql("DROP TABLE marts.true_redemptions")

    assert not summary.success
    assert summary.failed_checks == ["reward_embeddings:ranking_beats_popularity"]
    versions = registry_versions(data_dir)
    assert versions["serving"] == good
    rejected = [version for version, status in versions["taste_model"] if status == REJECTED]
    assert len(rejected) == 1 and rejected[0] != good["taste_model"]
    for table, frame in outputs.items():
        after = warehouse.frame(f"SELECT * FROM {table} ORDER BY 1, 2, 3")
        assert after.equals(frame), table
