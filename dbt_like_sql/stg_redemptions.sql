-- schema: staging
-- materialized: partitioned
-- partition_column: redeemed_at
-- group: staging
-- description: Reward redemptions of the window, typed.
SELECT
    redemption_id,
    customer_id,
    reward_id,
    redeemed_at,
    CAST(redeemed_at AS DATE) AS redeemed_date,
    points_spent
FROM {{ source('raw', 'redemptions') }}
WHERE redeemed_at >= :partition_start AND redeemed_at < :partition_end
