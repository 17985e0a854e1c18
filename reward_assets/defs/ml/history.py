"""What was scored and recommended on each as-of day: the SQL models `score_history` and
`recommendation_log` (group `scoring`, daily partitions by as-of day)."""

from reward_assets.defs.warehouse.sql_assets import HISTORY_GROUP, sql_model_assets

history_models = sql_model_assets(HISTORY_GROUP)
