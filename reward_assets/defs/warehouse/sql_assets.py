"""The factory of SQL model assets: one asset per `.sql` file of dbt_like_sql/, with the
checks its `.yml` declares and code references to both files. Each run builds the model
beside its table, checks the build, and swaps it in and publishes it only if no blocking
check fails (`quality/publish.py`).

Each group's module (`defs/warehouse/models.py`, `defs/analytics/models.py`,
`defs/ml/history.py`) builds the assets of its own models with it.
"""

import datetime as dt
from functools import cache

import dagster as dg
import pandas as pd

from reward_assets.contact.holdout import holdout_threshold
from reward_assets.defs.partitions import DAILY_TAG, daily_partitions, window_of
from reward_assets.defs.pools import WAREHOUSE_POOL
from reward_assets.defs.resources import SettingsResource, WarehouseResource
from reward_assets.defs.warehouse.audits import check_results, check_specs
from reward_assets.defs.warehouse.table_metadata import table_metadata
from reward_assets.ingest.clock import as_of_params, resolve_as_of
from reward_assets.ingest.contract import TIERS
from reward_assets.privacy import mask_record
from reward_assets.quality.checks import checks_path, load_checks
from reward_assets.quality.publish import build_model
from reward_assets.warehouse.sql_models import SQL_DIR, SqlModel, load_models

PREVIEW_ROWS = 5
# Partitioned models of this group record what was scored on a day: one day per run, and
# out of the `partitioned=daily` range launches, since a past day cannot be scored again.
HISTORY_GROUP = "scoring"
# Analytics read the marts, which a range launch of the daily data assets does not rebuild,
# so they are launched on their own (`group:analytics`) once the marts are current.
ANALYTICS_GROUP = "analytics"


def model_params(warehouse, settings) -> dict:
    last = daily_partitions.get_last_partition_window()
    return {
        **as_of_params(resolve_as_of(warehouse, settings.as_of)),
        "period_start": dt.datetime.combine(settings.partitions_start_date, dt.time()),
        # Where the last daily window ends: no load writes a row past it, so no view does.
        **({"period_end": last.end.replace(tzinfo=None)} if last else {}),
        "holdout_threshold": holdout_threshold(settings.holdout_share),
        "tiers": list(TIERS),
    }


def _preview(warehouse, model: SqlModel) -> str:
    frame = warehouse.frame(f"SELECT * FROM {model.table} LIMIT {PREVIEW_ROWS}")
    masked = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return dg.MetadataValue.md(
        pd.DataFrame([mask_record(r) for r in masked]).to_markdown(index=False)
    )


@cache
def project_models() -> dict[str, SqlModel]:
    return load_models(SQL_DIR)


def code_references(model: SqlModel) -> dict:
    files = [(model.path, "SQL")]
    if checks_path(model).exists():
        files.append((checks_path(model), "checks"))
    references = [
        dg.LocalFileCodeReference(file_path=str(path.resolve()), label=label)
        for path, label in files
    ]
    return {"dagster/code_references": dg.CodeReferencesMetadataValue(code_references=references)}


def sql_model_assets(*groups: str) -> list[dg.AssetsDefinition]:
    """The assets of the project's SQL models in `groups`."""
    models = project_models()
    return [sql_model_asset(m, models) for m in models.values() if m.group in groups]


def sql_model_asset(model: SqlModel, models: dict[str, SqlModel]) -> dg.AssetsDefinition:
    checks = load_checks(checks_path(model))
    ranged = model.partitioned and model.group != HISTORY_GROUP

    @dg.asset(
        pool=WAREHOUSE_POOL,
        name=model.name,
        group_name=model.group,
        description=f"{model.description}\n\nSQL: dbt_like_sql/{model.path.name}",
        deps=[*model.refs, *(entity for _, entity in model.sources)],
        kinds={"sql", "duckdb"},
        partitions_def=daily_partitions if model.partitioned else None,
        # An unpartitioned analytics model too (as analytics_report): a range launch of
        # the group must be one run.
        backfill_policy=(
            dg.BackfillPolicy.single_run() if ranged or model.group == ANALYTICS_GROUP else None
        ),
        tags=DAILY_TAG if ranged and model.group != ANALYTICS_GROUP else None,
        check_specs=check_specs(model.name, checks),
        metadata={
            "table": model.table,
            "materialized": model.materialized,
            **code_references(model),
        },
    )
    def _asset(
        context: dg.AssetExecutionContext,
        settings: SettingsResource,
        warehouse: WarehouseResource,
    ):
        config = settings.get()
        with warehouse.open() as wh:
            params = model_params(wh, config)
            if model.partitioned:
                start, end = window_of(context)
                params |= {"partition_start": start, "partition_end": end}
            audited = build_model(wh, model, models, params, config.data_dir)
            metadata = {
                "as_of": params["as_of"].isoformat(),
                **audited.metadata(),
            }
            metadata |= table_metadata(wh, model.table)
            if wh.table_exists(model.table):
                metadata["dagster/row_count"] = wh.row_count(model.table)
                if not model.partitioned:
                    metadata["preview"] = _preview(wh, model)
            if model.partitioned:
                metadata["rows_in_window"] = audited.rows
            if model.materialized == "incremental":
                # The rows this build replaced (every row, when it built the whole table).
                metadata["rows_rebuilt"] = audited.rows
        if not audited.published:
            kept = (
                "the marts built from the view keep their previous tables"
                if model.materialized == "view"
                else f"it kept its previous version; the rejected build is in "
                f"{audited.built.staged.staged}"
            )
            context.log.warning(
                f"{model.table}: blocking checks failed ({', '.join(audited.blocked_by)}); {kept}"
            )
        yield dg.MaterializeResult(metadata=metadata)
        yield from check_results(audited)

    return _asset
