-- schema: marts
-- materialized: table
-- group: warehouse
-- description: Per customer and category, purchases and net spend up to AS_OF, and the category's share of the customer's gross spend.
WITH spend AS (
    SELECT
        customer_id,
        category,
        COUNT(*) FILTER (WHERE NOT is_refund) AS purchases,
        SUM(amount) AS net_amount,
        SUM(CASE WHEN is_refund THEN 0 ELSE amount END) AS gross_amount
    FROM {{ ref('fct_transactions') }}
    WHERE occurred_at < CAST(:as_of_end AS TIMESTAMP) AND category IS NOT NULL
    GROUP BY customer_id, category
)
SELECT
    customer_id,
    category,
    CAST(:as_of AS DATE) AS as_of,
    purchases,
    net_amount,
    gross_amount / NULLIF(SUM(gross_amount) OVER (PARTITION BY customer_id), 0) AS spend_share
FROM spend
