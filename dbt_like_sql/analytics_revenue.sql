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
    SUM(CASE WHEN NOT is_refund THEN amount ELSE 0 END) AS gross_revenue,
    -SUM(CASE WHEN is_refund THEN amount ELSE 0 END) AS refunded,
    SUM(amount) AS net_revenue,
    CAST(SUM(points_earned) AS BIGINT) AS points_earned
FROM {{ ref('fct_transactions') }}
WHERE occurred_at >= :partition_start AND occurred_at < :partition_end
GROUP BY occurred_date, currency
