"""The one daily partitioning of the project: every daily asset imports it from here.

PARTITIONS_START_DATE is read when Dagster loads the definitions (this module is imported
by the defs folder's loader, never by the plain packages): a partitions definition is part
of every daily asset's identity, so it cannot wait for a run the way resources do.
"""

import dagster as dg

from reward_assets.settings import Settings

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=Settings().partitions_start_date.isoformat(), timezone="UTC"
)


def window_of(context: dg.AssetExecutionContext):
    """The run's partition window as naive UTC datetimes (the warehouse's convention)."""
    window = context.partition_time_window
    return window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)


# Lets a date range be launched across every daily asset at once:
#   dg launch --assets 'tag:partitioned=daily' --partition-range 2023-03-01...2023-03-31
DAILY_TAG = {"partitioned": "daily"}

# The range of a single-run backfill, as Dagster tags the run.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
