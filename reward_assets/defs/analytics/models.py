"""The daily analytics models of dbt_like_sql/analytics_*.sql (group `analytics`)."""

from reward_assets.defs.warehouse.sql_assets import ANALYTICS_GROUP, sql_model_assets

analytics_models = sql_model_assets(ANALYTICS_GROUP)
