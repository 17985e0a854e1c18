-- schema: marts
-- materialized: table
-- group: warehouse
-- description: The cleaned customer table: one row per known customer, with tier rank and global holdout membership.
SELECT
    customer_id,
    email,
    first_name,
    last_name,
    country,
    timezone,
    tier,
    {{ tier_rank('tier') }} AS tier_rank,
    points_balance,
    marketing_opt_in,
    preferred_categories,
    signup_at,
    CAST(signup_at AS DATE) AS signup_date,
    holdout_bucket < :holdout_threshold AS is_holdout
FROM {{ ref('stg_customers') }}
