-- schema: marts
-- materialized: incremental
-- partition_column: event_at
-- incremental_on: dim_customers(customer_id)
-- group: warehouse
-- description: Event rows whose customer is not known yet; they are retried on every load and leave this table once the customer arrives.
SELECT 'transactions' AS entity, transaction_id AS record_id, customer_id, occurred_at AS event_at
FROM {{ ref('stg_transactions') }} t
WHERE NOT EXISTS (SELECT 1 FROM {{ ref('dim_customers') }} c WHERE c.customer_id = t.customer_id)
UNION ALL
SELECT 'redemptions', redemption_id, customer_id, redeemed_at
FROM {{ ref('stg_redemptions') }} r
WHERE NOT EXISTS (SELECT 1 FROM {{ ref('dim_customers') }} c WHERE c.customer_id = r.customer_id)
UNION ALL
SELECT 'engagement_events', event_id, customer_id, occurred_at
FROM {{ ref('stg_engagement_events') }} e
WHERE NOT EXISTS (SELECT 1 FROM {{ ref('dim_customers') }} c WHERE c.customer_id = e.customer_id)
