"""Dagster concurrency pools: which ops of different runs may not run at the same time.

`warehouse` holds every op that opens the warehouse. On the DuckDB default, which admits
one process at a time (readers included), `dagster_home/dagster.yaml` lets one run of
this pool go at a time (pools at run granularity, limit 1), instead of one run of any
kind: `delivery_job`, which never opens the warehouse, no longer waits behind a backfill.
On PostgreSQL the pool has no limit (`deploy/dagster.yaml`).

`llm` holds the ops that have the LLM write email copy (the welcome and the cycle's
emails). Each such op keeps LLM_CONCURRENCY calls in flight; the pool's limit (1 in
`deploy/dagster.yaml`, set by compose's init) bounds how many such ops run at once across
runs, so at most LLM_CONCURRENCY calls are in flight in the whole deployment.

An op has one pool, and the copy-writing ops read the warehouse too. On DuckDB they are
therefore in `warehouse`, whose one run at a time also bounds their LLM calls; elsewhere in
`llm`. That choice is made when Dagster loads the code (like the executor), from the
settings: `copy_writing_pool`.
"""

from reward_assets.settings import Settings

WAREHOUSE_POOL = "warehouse"
LLM_POOL = "llm"


def copy_writing_pool(settings: Settings) -> str:
    on_duckdb = settings.resolved_warehouse_url().startswith("duckdb")
    return WAREHOUSE_POOL if on_duckdb else LLM_POOL
