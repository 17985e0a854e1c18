-- schema: ml
-- materialized: partitioned
-- partition_column: as_of
-- group: scoring
-- description: What was predicted for each customer on each scoring day (churn and engagement), with the model versions; a day holds rows only if scoring ran as of it.
SELECT
    c.as_of,
    c.customer_id,
    c.churn_probability,
    c.risk_band,
    e.open_probability,
    e.click_probability,
    e.best_local_hour,
    c.model_version AS churn_model_version,
    e.model_version AS engagement_model_version
FROM {{ source('ml', 'churn_scores') }} c
LEFT JOIN {{ source('ml', 'engagement_scores') }} e
    ON e.customer_id = c.customer_id AND e.as_of = c.as_of
