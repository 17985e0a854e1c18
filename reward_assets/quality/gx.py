"""Great Expectations (GX Core 1.x) on in-memory batches, with analytics switched off.

The warehouse is read in bounded batches (a day of a fact table at a time) and each
batch is validated against one suite, so no fact table is ever loaded whole.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache

import pandas as pd

# GX reads this when it is imported; it must never phone home (there is no network).
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402


@cache
def _batch_definition():
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("warehouse").add_dataframe_asset("batch")
    return asset.add_batch_definition_whole_dataframe("whole")


def validate_frame(
    frame: pd.DataFrame, expectations: Sequence[gx.expectations.Expectation], suite_name: str
) -> list[dict]:
    """One result per expectation, in order: success, unexpected count and examples.

    Expectations are bound to the suite they join, so pass fresh ones for every call.
    """
    suite = gx.ExpectationSuite(name=suite_name, expectations=list(expectations))
    result = _batch_definition().get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    outcomes = []
    for item in result.results:
        if item.exception_info and item.exception_info.get("raised_exception"):
            raise RuntimeError(
                f"GX failed on {item.expectation_config.type}: "
                f"{item.exception_info.get('exception_message')}"
            )
        outcomes.append(
            {
                "success": bool(item.success),
                "unexpected_count": int(item.result.get("unexpected_count") or 0),
                "examples": list(item.result.get("partial_unexpected_list") or []),
            }
        )
    return outcomes
