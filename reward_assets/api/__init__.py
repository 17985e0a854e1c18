"""The HTTP API (FastAPI): `reward_assets.api.main:app`, served by `make api`.

On the DuckDB default it reads the Parquet snapshots the assets publish (never the DuckDB
file a run may be writing) and the operational store; on PostgreSQL it reads the
warehouse itself. No Dagster import here: the API reuses the plain modules the assets call.
"""
