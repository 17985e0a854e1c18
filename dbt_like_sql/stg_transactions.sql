-- schema: staging
-- materialized: view
-- partition_column: occurred_at
-- group: staging
-- description: A view over raw.transactions: transactions, typed; a negative amount is a refund, kept and flagged.
SELECT
    transaction_id,
    customer_id,
    occurred_at,
    CAST(occurred_at AS DATE) AS occurred_date,
    amount,
    amount < 0 AS is_refund,
    UPPER(COALESCE(currency, 'USD')) AS currency,
    LOWER(category) AS category,
    LOWER(channel) AS channel,
    COALESCE(points_earned, 0) AS points_earned
FROM {{ source('raw', 'transactions') }}
