"""`run_failure_alert_sensor` and `freshness_alert_sensor`: tell the operator (ALERT_EMAIL_TO,
ALERT_WEBHOOK_URL) when a run fails or a table passes its freshness policy
(`defs/freshness.py`). Sending, and sending once, is `alerts.py`'s."""

import datetime as dt

import dagster as dg

# Not exported from `dagster` in 1.13; the freshness daemon records these states.
from dagster._core.definitions.freshness import FreshnessState

from reward_assets.alerts import (
    channels,
    freshness_alert,
    retry_pending,
    run_failure_alert,
    send_alert,
)
from reward_assets.defs.resources import OpsStoreResource, SettingsResource

NO_CHANNEL = "no ALERT_EMAIL_TO or ALERT_WEBHOOK_URL is set: nothing to alert"


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Mails (and posts) each failed run of this code location once.",
)
def run_failure_alert_sensor(
    context: dg.RunFailureSensorContext, settings: SettingsResource, ops: OpsStoreResource
):
    config = settings.get()
    if not channels(config):
        return dg.SkipReason(NO_CHANNEL)
    steps = context.get_step_failure_events()
    error = _cause(steps[0].event_specific_data.error) if steps else None
    alert = run_failure_alert(
        config,
        _what_ran(context.dagster_run),
        context.dagster_run.run_id,
        [event.step_key for event in steps],
        f"{error.cls_name}: {error.message.strip()}" if error else context.failure_event.message,
    )
    with ops.open() as store:
        sent = send_alert(store, config, alert)
    context.log.info(f"{alert.key}: sent on {', '.join(sent) or 'no channel (sent before)'}")


def _what_ran(run: dg.DagsterRun) -> str:
    """The job's name; for an ad-hoc materialisation (Dagster's hidden asset job), the
    assets it was asked for."""
    if not run.job_name.startswith("__ASSET_JOB"):
        return run.job_name
    keys = sorted(key.to_user_string() for key in run.asset_selection or [])
    shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
    return f"assets {shown}" if keys else "assets"


def _cause(error):
    """The first error below Dagster's step wrapper: the project's own message."""
    while error.cause and error.cls_name.startswith("Dagster"):
        error = error.cause
    return error


@dg.sensor(
    name="freshness_alert_sensor",
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Mails (and posts) each table that went past its freshness policy, once per "
    "breach, and retries alerts a channel failed to take. The freshness daemon (`dg dev`, "
    "`dagster-daemon`) evaluates the policies.",
)
def freshness_alert_sensor(
    context: dg.SensorEvaluationContext, settings: SettingsResource, ops: OpsStoreResource
):
    config = settings.get()
    if not channels(config):
        return dg.SkipReason(NO_CHANNEL)
    graph = context.repository_def.asset_graph
    policies = {
        key: graph.get(key).freshness_policy
        for key in graph.get_all_asset_keys()
        if graph.get(key).freshness_policy
    }
    records = context.instance.get_freshness_state_records(list(policies))
    stale = {k: r for k, r in records.items() if r.freshness_state == FreshnessState.FAIL}
    sent = 0
    with ops.open() as store:
        # Alerts a channel failed to take, of this sensor or of run_failure_alert_sensor.
        retried = retry_pending(store, config)
        for key, record in sorted(stale.items()):
            last = context.instance.get_latest_materialization_event(key)
            alert = freshness_alert(
                config,
                key.to_user_string(),
                record.updated_at,
                policies[key].fail_window.to_timedelta(),
                dt.datetime.fromtimestamp(last.timestamp, dt.UTC) if last else None,
            )
            sent += bool(send_alert(store, config, alert))
    return dg.SkipReason(
        f"{len(stale)} of {len(policies)} tables with a freshness policy are stale, "
        f"{sent} newly alerted; {len(retried)} earlier alerts sent again"
    )
