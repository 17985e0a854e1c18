-- schema: analytics
-- materialized: partitioned
-- partition_column: day
-- group: analytics
-- description: Email uplift per day: redemptions per customer of the contacted arm (consenting customers outside the holdout) minus the holdout's (consenting customers in it), both among customers signed up before the day, with the sums of squares the report's 95% confidence interval needs.
WITH days AS (
    SELECT CAST(d AS DATE) AS day
    FROM generate_series(
        CAST(:partition_start AS TIMESTAMP),
        CAST(:partition_end AS TIMESTAMP) - INTERVAL '1 day',
        INTERVAL '1 day'
    ) AS g(d)
    -- Days after the data's today have no redemptions yet, not zero.
    WHERE CAST(d AS DATE) <= CAST(:as_of AS DATE)
),
signups AS (
    SELECT signup_date, is_holdout, COUNT(*) AS n
    FROM {{ ref('dim_customers') }}
    WHERE marketing_opt_in
    GROUP BY signup_date, is_holdout
),
population AS (
    SELECT
        d.day,
        CAST(SUM(CASE WHEN NOT s.is_holdout THEN s.n ELSE 0 END) AS BIGINT) AS contacted_customers,
        CAST(SUM(CASE WHEN s.is_holdout THEN s.n ELSE 0 END) AS BIGINT) AS holdout_customers
    FROM days d
    JOIN signups s ON s.signup_date < d.day
    GROUP BY d.day
),
per_customer AS (
    SELECT r.redeemed_date AS day, c.is_holdout, r.customer_id, COUNT(*) AS x
    FROM {{ ref('fct_redemptions') }} r
    JOIN {{ ref('dim_customers') }} c ON c.customer_id = r.customer_id
    WHERE c.marketing_opt_in AND c.signup_date < r.redeemed_date
        AND r.redeemed_at >= :partition_start AND r.redeemed_at < :partition_end
    GROUP BY r.redeemed_date, c.is_holdout, r.customer_id
),
sums AS (
    SELECT
        day,
        CAST(SUM(CASE WHEN NOT is_holdout THEN x ELSE 0 END) AS BIGINT) AS contacted_redemptions,
        CAST(SUM(CASE WHEN NOT is_holdout THEN x * x ELSE 0 END) AS BIGINT) AS contacted_sum_sq,
        CAST(SUM(CASE WHEN is_holdout THEN x ELSE 0 END) AS BIGINT) AS holdout_redemptions,
        CAST(SUM(CASE WHEN is_holdout THEN x * x ELSE 0 END) AS BIGINT) AS holdout_sum_sq
    FROM per_customer
    GROUP BY day
),
rates AS (
    SELECT
        p.day,
        p.contacted_customers,
        COALESCE(s.contacted_redemptions, 0) AS contacted_redemptions,
        COALESCE(s.contacted_sum_sq, 0) AS contacted_sum_sq,
        p.holdout_customers,
        COALESCE(s.holdout_redemptions, 0) AS holdout_redemptions,
        COALESCE(s.holdout_sum_sq, 0) AS holdout_sum_sq,
        CAST(COALESCE(s.contacted_redemptions, 0) AS DOUBLE PRECISION)
            / NULLIF(p.contacted_customers, 0) AS contacted_rate,
        CAST(COALESCE(s.holdout_redemptions, 0) AS DOUBLE PRECISION)
            / NULLIF(p.holdout_customers, 0) AS holdout_rate
    FROM population p
    LEFT JOIN sums s ON s.day = p.day
)
SELECT *, contacted_rate - holdout_rate AS uplift
FROM rates
