-- schema: staging
-- materialized: table
-- group: staging
-- description: Customers as landed and validated, with defaults filled: tier bronze, balance 0, no consent, time zone UTC, country upper-case.
SELECT
    customer_id,
    email,
    signup_at,
    first_name,
    last_name,
    UPPER(country) AS country,
    COALESCE(timezone, 'UTC') AS timezone,
    COALESCE(tier, {{ lowest_tier() }}) AS tier,
    COALESCE(points_balance, 0) AS points_balance,
    COALESCE(marketing_opt_in, FALSE) AS marketing_opt_in,
    preferred_categories,
    holdout_bucket
FROM {{ source('raw', 'customers') }}
