-- schema: marts
-- materialized: incremental
-- partition_column: event_at
-- incremental_on: dim_customers(customer_id)
-- group: warehouse
-- description: Event rows whose customer is not known yet; they are retried on every load and leave this table once the customer arrives.
-- An anti-join as LEFT JOIN ... IS NULL, not NOT EXISTS: the same rows, but DuckDB plans
-- NOT EXISTS as a correlated join that an incremental build's filter on changed customers
-- cannot reach, and that build then cost three times the CPU (1,000,000 customers).
SELECT 'transactions' AS entity, t.transaction_id AS record_id, t.customer_id, t.occurred_at AS event_at
FROM {{ ref('stg_transactions') }} t
LEFT JOIN {{ ref('dim_customers') }} c ON c.customer_id = t.customer_id
WHERE c.customer_id IS NULL
UNION ALL
SELECT 'redemptions', r.redemption_id, r.customer_id, r.redeemed_at
FROM {{ ref('stg_redemptions') }} r
LEFT JOIN {{ ref('dim_customers') }} c ON c.customer_id = r.customer_id
WHERE c.customer_id IS NULL
UNION ALL
SELECT 'engagement_events', e.event_id, e.customer_id, e.occurred_at
FROM {{ ref('stg_engagement_events') }} e
LEFT JOIN {{ ref('dim_customers') }} c ON c.customer_id = e.customer_id
WHERE c.customer_id IS NULL
