-- schema: analytics
-- materialized: partitioned
-- partition_column: day
-- group: analytics
-- description: Revenue per day and currency: purchases, refunds and revenue net of refunds (a refund counts on the day it was made), with the points earned.
SELECT
    occurred_date AS day,
    currency,
    COUNT(CASE WHEN NOT is_refund THEN 1 END) AS purchases,
    COUNT(CASE WHEN is_refund THEN 1 END) AS refunds,
    -- Summed as exact decimals: a float sum depends on the order the engine adds rows in,
    -- so a day computed alone and the same day inside a range would differ in the last digits.
    CAST(SUM(CASE WHEN NOT is_refund THEN CAST(amount AS DECIMAL(18, 4)) ELSE 0 END)
        AS DOUBLE PRECISION) AS gross_revenue,
    CAST(-SUM(CASE WHEN is_refund THEN CAST(amount AS DECIMAL(18, 4)) ELSE 0 END)
        AS DOUBLE PRECISION) AS refunded,
    CAST(SUM(CAST(amount AS DECIMAL(18, 4))) AS DOUBLE PRECISION) AS net_revenue,
    CAST(SUM(points_earned) AS BIGINT) AS points_earned
FROM {{ ref('fct_transactions') }}
WHERE occurred_at >= :partition_start AND occurred_at < :partition_end
GROUP BY occurred_date, currency
