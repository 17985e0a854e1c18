-- schema: analytics
-- materialized: partitioned
-- partition_column: day
-- group: analytics
-- description: Redemptions and points spent per day, reward and category (points spent as recorded, else the reward's points cost).
SELECT
    r.redeemed_date AS day,
    r.reward_id,
    w.name AS reward_name,
    COALESCE(r.category, 'unknown') AS category,
    COUNT(*) AS redemptions,
    COUNT(DISTINCT r.customer_id) AS customers,
    CAST(SUM(COALESCE(r.points_spent, w.points_cost)) AS BIGINT) AS points_spent
FROM {{ ref('fct_redemptions') }} r
LEFT JOIN {{ ref('dim_rewards') }} w ON w.reward_id = r.reward_id
WHERE r.redeemed_at >= :partition_start AND r.redeemed_at < :partition_end
GROUP BY r.redeemed_date, r.reward_id, w.name, COALESCE(r.category, 'unknown')
