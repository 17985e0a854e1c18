"""The recommendation log keeps each set once, with the days that served it, and reads
back, day by day, exactly the rows the sets held (recommend/log.py); on both warehouses."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from reward_assets.recommend.log import DAYS, LOG, LOGGED, SPANS, log_day
from reward_assets.recommend.sets import TABLE_COLUMNS
from reward_assets.warehouse.store import Warehouse

D1, D2, D3 = dt.date(2023, 5, 1), dt.date(2023, 5, 2), dt.date(2023, 5, 3)
SETS = "ml.recommendation_sets"


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request) -> Warehouse:
    return request.getfixturevalue(
        "duckdb_warehouse" if request.param == "duckdb" else "pg_warehouse"
    )


def sets_of(as_of: dt.date, sets: dict[str, tuple[str, dt.date, int | None]]) -> pd.DataFrame:
    """Two ranks per customer: customer -> (first reward, computed_as_of, inputs_key)."""
    rows = []
    for customer, (reward, computed, key) in sets.items():
        for rank, reward_id in enumerate([reward, f"{reward}-b"], start=1):
            rows.append(
                {
                    "as_of": as_of,
                    "customer_id": customer,
                    "rank": rank,
                    "reward_id": reward_id,
                    "score": 1.0 / rank,
                    "reason": f"because {reward_id}",
                    "is_almost_there": rank == 2,
                    "is_exploration": False,
                    "model_version": "v1",
                    "source": "model",
                    "computed_as_of": computed,
                    "inputs_key": key,
                }
            )
    return pd.DataFrame(rows)


def serve(warehouse: Warehouse, frame: pd.DataFrame) -> None:
    warehouse.replace_table(SETS, TABLE_COLUMNS, [frame])


def logged(warehouse: Warehouse, day: dt.date) -> pd.DataFrame:
    return warehouse.frame(
        f"SELECT * FROM {LOG} WHERE as_of = :day ORDER BY customer_id, rank", {"day": day}
    )


def expected(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[["as_of", *LOGGED]].sort_values(["customer_id", "rank"], ignore_index=True)


def assert_logged(warehouse: Warehouse, day: dt.date, frame: pd.DataFrame) -> None:
    found = logged(warehouse, day)
    found["as_of"] = pd.to_datetime(found["as_of"]).dt.date
    pd.testing.assert_frame_equal(found, expected(frame), check_dtype=False, check_exact=True)


def test_each_day_reads_back_the_sets_it_served_and_stores_only_the_changes(warehouse):
    day1 = sets_of(D1, {"a": ("r1", D1, 11), "b": ("r2", D1, 12), "c": ("r3", D1, 13)})
    serve(warehouse, day1)
    first = log_day(warehouse, D1)
    assert (first.rows, first.added, first.customers_changed, first.stored) == (6, 6, 3, 6)

    # a carried (as_of moves, the rest is the row computed on D1), b recomputed with
    # another set, c without a set any more, d new.
    day2 = sets_of(D2, {"a": ("r1", D1, 11), "b": ("r9", D2, 22), "d": ("r4", D2, 14)})
    serve(warehouse, day2)
    second = log_day(warehouse, D2)

    assert (second.rows, second.added, second.customers_changed) == (6, 4, 3)
    assert second.stored == 10 == warehouse.row_count(SPANS)
    assert_logged(warehouse, D1, day1)
    assert_logged(warehouse, D2, day2)
    spans = warehouse.frame(f"SELECT customer_id, valid_from, valid_to FROM {SPANS}")
    assert spans[spans.customer_id == "a"].valid_to.isna().all()
    assert (pd.to_datetime(spans[spans.customer_id == "c"].valid_to).dt.date == D2).all()


def test_logging_the_last_day_again_replaces_it_and_an_earlier_day_stays(warehouse):
    before_any = log_day(warehouse, D1)
    assert "missing or empty" in before_any.skipped and before_any.rows == 0

    day1 = sets_of(D1, {"a": ("r1", D1, 11), "b": ("r2", D1, 12)})
    serve(warehouse, day1)
    log_day(warehouse, D1)
    serve(warehouse, sets_of(D2, {"a": ("r1", D1, 11), "b": ("r5", D2, 15)}))
    log_day(warehouse, D2)

    # The day scored again: a's set recomputed now, b's back to its D1 inputs.
    rescored = sets_of(D2, {"a": ("r7", D2, 17), "b": ("r2", D1, 12)})
    serve(warehouse, rescored)
    again = log_day(warehouse, D2)

    assert again.skipped == ""
    assert_logged(warehouse, D1, day1)
    assert_logged(warehouse, D2, rescored)
    assert warehouse.row_count(DAYS) == 2
    # b's D1 set serves on: one span for both days, not a second copy.
    assert again.stored == warehouse.row_count(SPANS) == 4 + 2

    # A day the sets are not as of, or an earlier day scored again (AS_OF), is left as it
    # was, and says why.
    not_as_of = log_day(warehouse, D3)
    assert f"as of {D2}" in not_as_of.skipped and not_as_of.rows == 0
    serve(warehouse, sets_of(D1, {"a": ("r8", D1, 18)}))
    earlier = log_day(warehouse, D1)
    assert "only grows at its end" in earlier.skipped and earlier.rows == 4
    assert_logged(warehouse, D1, day1)
    assert_logged(warehouse, D2, rescored)
    assert warehouse.row_count(DAYS) == 2


def test_a_log_kept_as_a_table_of_every_days_rows_becomes_spans(warehouse):
    day1 = sets_of(D1, {"a": ("r1", D1, 11), "b": ("r2", D1, 12)})
    day2 = sets_of(D2, {"a": ("r1", D1, 11), "b": ("r3", D2, 13)})
    columns = {"as_of": "DATE", **LOGGED}
    warehouse.replace_table(LOG, columns, [day1[list(columns)], day2[list(columns)]])

    day3 = sets_of(D3, {"a": ("r1", D1, 11), "c": ("r4", D3, 14)})
    serve(warehouse, day3)
    third = log_day(warehouse, D3)

    assert_logged(warehouse, D1, day1)
    assert_logged(warehouse, D2, day2)
    assert_logged(warehouse, D3, day3)
    # The table's last day had no identity to compare: every set of D3 is stored once.
    assert third.customers_changed == 3 and third.added == 4
    assert warehouse.row_count(DAYS) == 3
