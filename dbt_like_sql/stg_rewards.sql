-- schema: staging
-- materialized: table
-- group: staging
-- description: Reward catalogue with defaults filled: active unless stated, open to every tier unless a minimum tier is given; a NULL inventory means unlimited.
SELECT
    reward_id,
    name,
    LOWER(category) AS category,
    points_cost,
    description,
    inventory,
    COALESCE(min_tier, {{ lowest_tier() }}) AS min_tier,
    COALESCE(active, TRUE) AS active
FROM {{ source('raw', 'rewards') }}
