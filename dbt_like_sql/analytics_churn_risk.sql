-- schema: analytics
-- materialized: partitioned
-- partition_column: day
-- group: analytics
-- description: The churn-risk mix of each scoring day (from score_history): customers, share and mean churn probability per risk band; a day holds rows only if scoring ran as of it.
SELECT
    as_of AS day,
    risk_band,
    COUNT(*) AS customers,
    CAST(COUNT(*) AS DOUBLE PRECISION) / SUM(COUNT(*)) OVER (PARTITION BY as_of) AS share,
    AVG(churn_probability) AS mean_churn_probability
FROM {{ ref('score_history') }}
WHERE as_of >= :partition_start AND as_of < :partition_end
GROUP BY as_of, risk_band
