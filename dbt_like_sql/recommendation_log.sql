-- schema: ml
-- materialized: partitioned
-- partition_column: as_of
-- group: scoring
-- description: What was recommended to each customer on each scoring day, rank by rank, with the model version; a day holds rows only if scoring ran as of it.
SELECT
    as_of,
    customer_id,
    rank,
    reward_id,
    score,
    reason,
    is_almost_there,
    is_exploration,
    model_version
FROM {{ source('ml', 'recommendation_sets') }}
