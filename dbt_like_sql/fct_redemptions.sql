-- schema: marts
-- materialized: incremental
-- partition_column: redeemed_at
-- incremental_on: dim_customers(customer_id) dim_rewards(reward_id, category)
-- group: warehouse
-- description: Redemptions of known customers, with the reward's category.
SELECT r.*, w.category
FROM {{ ref('stg_redemptions') }} r
JOIN {{ ref('dim_customers') }} c ON c.customer_id = r.customer_id
LEFT JOIN {{ ref('dim_rewards') }} w ON w.reward_id = r.reward_id
