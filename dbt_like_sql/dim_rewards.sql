-- schema: marts
-- materialized: table
-- group: warehouse
-- description: The reward catalogue: one row per reward, with the minimum tier's rank and whether it can be redeemed now (active and in stock).
SELECT
    reward_id,
    name,
    category,
    points_cost,
    description,
    inventory,
    min_tier,
    {{ tier_rank('min_tier') }} AS min_tier_rank,
    active,
    active AND (inventory IS NULL OR inventory > 0) AS is_available
FROM {{ ref('stg_rewards') }}
