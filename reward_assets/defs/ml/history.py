"""What was scored and recommended on each as-of day: the SQL model `score_history` and
the asset `recommendation_log`, written in Python (group `scoring`, daily partitions by
as-of day)."""

import dagster as dg

from reward_assets.defs.partitions import daily_partitions, window_of
from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import WarehouseResource
from reward_assets.defs.warehouse.sql_assets import HISTORY_GROUP, sql_model_assets
from reward_assets.defs.warehouse.table_metadata import table_metadata
from reward_assets.recommend.log import LOG, log_day

history_models = sql_model_assets(HISTORY_GROUP)


@dg.asset(
    pool=WAREHOUSE_POOL,
    group_name=HISTORY_GROUP,
    deps=["recommendation_sets"],
    kinds={"sql", "duckdb"},
    partitions_def=daily_partitions,
    metadata={"table": LOG},
)
def recommendation_log(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """What was recommended to each customer on each scoring day, rank by rank, with the
    model version (the view ml.recommendation_log); a day holds rows only if scoring ran
    as of it. Each set is stored once, with the days that served it
    (ml.recommendation_spans): a day adds the sets that changed, not every customer's."""
    day = window_of(context)[0].date()
    with warehouse.open() as wh:
        logged = log_day(wh, day)
        tables = table_metadata(wh, "ml.recommendation_spans")
    if logged.skipped:
        context.log.warning(f"recommendation_log: {logged.skipped}")
    return dg.MaterializeResult(
        metadata={
            "as_of": day.isoformat(),
            "dagster/row_count": logged.rows,
            "rows_in_window": logged.rows,
            "customers_changed": logged.customers_changed,
            "span_rows_added": logged.added,
            "span_rows_stored": logged.stored,
            **({"skipped": logged.skipped} if logged.skipped else {}),
            **tables,
        }
    )
