"""The same seed through the SQL models on DuckDB and on PostgreSQL gives the same marts."""

import pandas as pd
import pytest

from reward_assets.seed.generate import generate
from reward_assets.seed.model import SeedConfig
from reward_assets.warehouse.store import Warehouse

SEEDED_START, SEEDED_DAYS = "2023-03-01", 30
TABLES = [
    "raw.customers",
    "raw.rewards",
    "raw.transactions",
    "raw.redemptions",
    "raw.engagement_events",
    "raw.quarantine",
    "staging.stg_transactions",
    "marts.dim_customers",
    "marts.dim_rewards",
    "marts.fct_transactions",
    "marts.fct_redemptions",
    "marts.fct_engagement_events",
    "marts.held_rows",
    "marts.customer_features",
]
# Plain float sums: DuckDB's NUMERIC keeps 3 decimals, so casts would hide differences.
FEATURE_AGGREGATES = """
SELECT COUNT(*) AS customers,
       SUM(CAST(recency_days AS BIGINT)) AS recency,
       SUM(CAST(tenure_days AS BIGINT)) AS tenure,
       SUM(purchases_total) AS purchases,
       SUM(frequency_90d) AS frequency,
       SUM(monetary_total) AS monetary,
       SUM(monetary_90d) AS monetary_90d,
       SUM(refunds_total) AS refunds,
       SUM(categories_bought) AS categories,
       SUM(top_category_share) AS top_share,
       AVG(open_rate_90d) AS open_rate,
       SUM(emails_sent_90d) AS emails,
       SUM(redemptions_total) AS redemptions,
       SUM(CASE WHEN is_holdout THEN 1 ELSE 0 END) AS holdout,
       SUM(CASE WHEN has_opted_out THEN 1 ELSE 0 END) AS opted_out
FROM marts.customer_features
"""


@pytest.mark.postgres
def test_duckdb_and_postgres_give_identical_marts(tmp_path, run_pipeline, pg_url):
    data = tmp_path / "data"
    generate(SeedConfig(output=data, customers=400, rewards=40, days=SEEDED_DAYS, seed=7))
    end = pd.Timestamp(SEEDED_START) + pd.Timedelta(days=SEEDED_DAYS - 1)
    duck_url = f"duckdb:///{tmp_path / 'parity.duckdb'}"

    results = {}
    for name, url in (("duckdb", duck_url), ("postgres", pg_url)):
        run_pipeline(data, url, SEEDED_START, end.date().isoformat())
        warehouse = Warehouse(url)
        try:
            counts = {table: warehouse.row_count(table) for table in TABLES}
            aggregates = warehouse.frame(FEATURE_AGGREGATES).iloc[0]
            results[name] = (counts, {k: float(v or 0) for k, v in aggregates.items()})
        finally:
            warehouse.dispose()

    duck_counts, duck_aggregates = results["duckdb"]
    pg_counts, pg_aggregates = results["postgres"]
    assert duck_counts["marts.customer_features"] > 300
    assert duck_counts["marts.fct_transactions"] > 1000
    assert duck_counts["raw.quarantine"] > 0
    assert duck_counts == pg_counts
    assert duck_aggregates["purchases"] > 0 and duck_aggregates["emails"] > 0
    assert duck_aggregates == pytest.approx(pg_aggregates, rel=1e-9)
