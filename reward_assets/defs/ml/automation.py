"""Models retrain on their own cadence; scoring follows every successful daily refresh."""

import dagster as dg

from reward_assets.defs.ingest.schedules import daily_refresh_job
from reward_assets.defs.partitions import RANGE_END_TAG, daily_partitions
from reward_assets.settings import Settings

model_training_job = dg.define_asset_job(
    "model_training_job",
    selection=dg.AssetSelection.groups("ml"),
    description="Retrains the taste, churn and engagement models and re-runs the evaluation.",
)

daily_scoring_job = dg.define_asset_job(
    "daily_scoring_job",
    selection=dg.AssetSelection.groups("scoring"),
    partitions_def=daily_partitions,
    description="Scores every customer from the latest approved models and records the day "
    "in score_history and recommendation_log (the partition is the as-of day).",
)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[daily_refresh_job],
    request_job=daily_scoring_job,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def score_after_refresh(context: dg.RunStatusSensorContext):
    """Scores as of the last day a successful refresh loaded, once per refresh run."""
    tags = context.dagster_run.tags
    day = tags.get(RANGE_END_TAG) or tags.get("dagster/partition")
    if not day:
        return dg.SkipReason("the refresh run had no partition to take the as-of day from")
    return dg.RunRequest(run_key=f"scoring-{context.dagster_run.run_id}", partition_key=day)


@dg.definitions
def automation() -> dg.Definitions:
    """The jobs, the sensor and the retraining schedule, whose cron (RETRAIN_CRON) is read
    when Dagster loads the code."""
    return dg.Definitions(
        jobs=[model_training_job, daily_scoring_job],
        sensors=[score_after_refresh],
        schedules=[
            dg.ScheduleDefinition(
                name="model_training_schedule",
                job=model_training_job,
                cron_schedule=Settings().retrain_cron,
                execution_timezone="UTC",
                default_status=dg.DefaultScheduleStatus.STOPPED,
                description="Weekly by default (RETRAIN_CRON).",
            )
        ],
    )
