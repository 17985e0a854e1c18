"""The day after: customer embeddings and recommendation sets are computed again only for
customers whose inputs changed, and the served result is, row for row, what a full
recomputation gives; the recommendation log stores only the changed sets and reads back
each day's sets.

Runs on a copy of the scored default world (models approved), lands one more day with
`simulate_day`, loads it, and runs the two assets incrementally; then removes their
served outputs and runs them again from scratch on the same data.
"""

from __future__ import annotations

import shutil

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from reward_assets.ingest.clock import resolve_as_of
from reward_assets.recommend.log import LOG, SPANS
from reward_assets.seed.generate import simulate_day
from reward_assets.warehouse.store import Warehouse

ASSETS = dg.AssetSelection.assets(
    "customer_embeddings", "recommendation_sets", "recommendation_log"
)
SETS = "ml.recommendation_sets"
ORDER = ["customer_id", "rank"]


def logged(url: str, day) -> pd.DataFrame:
    warehouse = Warehouse(url)
    found = warehouse.frame(
        f"SELECT * FROM {LOG} WHERE as_of = :day ORDER BY customer_id, rank", {"day": day}
    )
    warehouse.dispose()
    return found


def assert_logged(found: pd.DataFrame, sets: pd.DataFrame) -> None:
    shown = sets[found.columns]
    pd.testing.assert_frame_equal(
        found.astype({"as_of": "datetime64[s]"}),
        shown.astype({"as_of": "datetime64[s]"}),
        check_dtype=False,
        check_exact=True,
    )


def served(warehouse: Warehouse, data_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    sets = warehouse.frame(f"SELECT * FROM {SETS} ORDER BY customer_id, rank")
    vectors = pq.read_table(data_dir / "snapshots" / "customer_embeddings.parquet").to_pandas()
    warehouse.dispose()
    return sets, vectors.sort_values("customer_id", ignore_index=True)


def test_the_day_after_only_changed_customers_are_recomputed_as_a_full_run_would(
    scored, worlds, tmp_path, run_pipeline
):
    _, scored_warehouse, scored_data = scored
    scored_warehouse.dispose()
    world = worlds("default")
    data_dir, warehouse_file = tmp_path / "data", tmp_path / "warehouse.duckdb"
    shutil.copytree(world.data_dir, data_dir)
    shutil.copytree(scored_data, data_dir, dirs_exist_ok=True)
    shutil.copy(scored_warehouse.url.removeprefix("duckdb:///"), warehouse_file)
    url = f"duckdb:///{warehouse_file}"
    warehouse = Warehouse(url)
    day = resolve_as_of(warehouse, None)
    served_before = warehouse.frame(f"SELECT * FROM {SETS} ORDER BY customer_id, rank")
    warehouse.dispose()

    landed = simulate_day(data_dir)
    run_pipeline(data_dir, url, str(landed.first_day), str(landed.last_day))
    run_pipeline(data_dir, url, str(landed.last_day), str(landed.last_day), selection=ASSETS)
    sets, vectors = served(warehouse, data_dir)
    next_day = resolve_as_of(warehouse, None)
    assert next_day == day + pd.Timedelta(days=1)

    # The log reads back both days; the second added only the recomputed customers' sets.
    assert_logged(logged(url, day), served_before)
    assert_logged(logged(url, next_day), sets)
    warehouse = Warehouse(url)
    recomputed_rows = int((sets["computed_as_of"] == pd.Timestamp(next_day)).sum())
    assert 0 < recomputed_rows < len(sets) / 2
    assert warehouse.row_count(SPANS) == len(served_before) + recomputed_rows
    warehouse.dispose()

    warehouse = Warehouse(url)
    with warehouse.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {SETS}")
    warehouse.dispose()
    (data_dir / "snapshots" / "customer_embeddings.parquet").unlink()
    run_pipeline(data_dir, url, str(landed.last_day), str(landed.last_day), selection=ASSETS)
    full_sets, full_vectors = served(warehouse, data_dir)

    # Everything a reader sees is the full run's; only the day each row was computed on
    # tells the carried rows from the recomputed ones.
    assert (full_sets["computed_as_of"] == pd.Timestamp(next_day)).all()
    same = [c for c in full_sets.columns if c != "computed_as_of"]
    pd.testing.assert_frame_equal(sets[same], full_sets[same], check_exact=True)
    # Scoring the day again replaced its log: the same rows, the day before unchanged.
    assert_logged(logged(url, next_day), full_sets)
    assert_logged(logged(url, day), served_before)
    recomputed = sets.groupby("customer_id")["computed_as_of"].first() == pd.Timestamp(next_day)
    assert 0 < recomputed.sum() < len(recomputed) / 2
    assert set(sets["computed_as_of"]) == {pd.Timestamp(day), pd.Timestamp(next_day)}

    same = [c for c in full_vectors.columns if c != "computed_as_of"]
    pd.testing.assert_frame_equal(vectors[same], full_vectors[same], check_exact=True)
    embedded = pd.to_datetime(vectors["computed_as_of"]) == pd.Timestamp(next_day)
    assert 0 < embedded.sum() < len(embedded) / 2
