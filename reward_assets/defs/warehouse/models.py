"""The staging models and the marts of dbt_like_sql/ (groups `staging` and `warehouse`),
among them `dim_customers`, `dim_rewards`, `fct_transactions` and `customer_features`."""

from reward_assets.defs.warehouse.sql_assets import sql_model_assets

warehouse_models = sql_model_assets("staging", "warehouse")
