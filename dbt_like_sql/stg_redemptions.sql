-- schema: staging
-- materialized: view
-- partition_column: redeemed_at
-- group: staging
-- description: A view over raw.redemptions: reward redemptions, typed.
SELECT
    redemption_id,
    customer_id,
    reward_id,
    redeemed_at,
    CAST(redeemed_at AS DATE) AS redeemed_date,
    points_spent
FROM {{ source('raw', 'redemptions') }}
