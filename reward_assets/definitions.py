"""The code location: everything under `defs/`, loaded when Dagster asks for it, each
asset with a reference to the code that defines it (the UI opens it from the asset), the
kinds of the stores configured and the freshness policy of its schedule."""

import warnings
from pathlib import Path

import dagster as dg

from reward_assets.settings import Settings

# Code references and an asset's backfill policy are beta in the Dagster range
# pyproject.toml pins; their warnings, one per asset on every load (the asset modules
# load with `freshness`), buried the output of `make run` and `dagster dev` (180 lines).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    from reward_assets.defs.freshness import with_freshness
    from reward_assets.defs.resources import store_kinds


@dg.definitions
def defs() -> dg.Definitions:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _definitions()


def _definitions() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    settings = Settings()
    kinds = store_kinds(settings)

    def attributes(spec: dg.AssetSpec) -> dg.AssetSpec:
        spec = spec.replace_attributes(kinds={kinds.get(k, k) for k in spec.kinds})
        return with_freshness(spec, settings)

    assets = [
        a.map_asset_specs(attributes) if isinstance(a, dg.AssetsDefinition) else a
        for a in loaded.assets or []
    ]
    return dg.Definitions(
        assets=dg.with_source_code_references(assets),
        asset_checks=loaded.asset_checks,
        jobs=loaded.jobs,
        schedules=loaded.schedules,
        sensors=loaded.sensors,
        resources=loaded.resources,
        executor=loaded.executor,
        loggers=loaded.loggers,
        metadata=loaded.metadata,
    )
