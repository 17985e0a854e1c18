-- schema: analytics
-- materialized: partitioned
-- partition_column: day
-- group: analytics
-- description: Recommendation coverage and acceptance per scoring day (from recommendation_log): customers with a set among those signed up by then, and the recommended rewards the customer redeemed within 14 days; window_complete is false while those 14 days reach past AS_OF.
WITH recs AS (
    SELECT as_of, customer_id, reward_id
    FROM {{ source('ml', 'recommendation_log') }}
    WHERE as_of >= :partition_start AND as_of < :partition_end
),
accepted AS (
    SELECT DISTINCT x.as_of, x.customer_id, x.reward_id
    FROM recs x
    JOIN {{ ref('fct_redemptions') }} r
        ON r.customer_id = x.customer_id AND r.reward_id = x.reward_id
        AND r.redeemed_date >= x.as_of AND r.redeemed_date <= x.as_of + 14
),
per_day AS (
    SELECT
        x.as_of AS day,
        COUNT(DISTINCT x.customer_id) AS customers_recommended,
        COUNT(*) AS recommendations,
        COUNT(a.reward_id) AS accepted,
        COUNT(DISTINCT a.customer_id) AS customers_accepting
    FROM recs x
    LEFT JOIN accepted a
        ON a.as_of = x.as_of AND a.customer_id = x.customer_id AND a.reward_id = x.reward_id
    GROUP BY x.as_of
),
signups AS (
    SELECT signup_date, COUNT(*) AS n
    FROM {{ ref('dim_customers') }}
    GROUP BY signup_date
),
known AS (
    SELECT p.day, CAST(SUM(s.n) AS BIGINT) AS known_customers
    FROM per_day p
    JOIN signups s ON s.signup_date <= p.day
    GROUP BY p.day
)
SELECT
    p.day,
    p.customers_recommended,
    COALESCE(k.known_customers, 0) AS known_customers,
    CAST(p.customers_recommended AS DOUBLE PRECISION) / NULLIF(k.known_customers, 0) AS coverage,
    p.recommendations,
    p.accepted,
    CAST(p.accepted AS DOUBLE PRECISION) / NULLIF(p.recommendations, 0) AS acceptance_rate,
    p.customers_accepting,
    p.day + 14 <= CAST(:as_of AS DATE) AS window_complete
FROM per_day p
LEFT JOIN known k ON k.day = p.day
