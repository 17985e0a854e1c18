-- schema: marts
-- materialized: history
-- group: warehouse
-- description: The customer attributes that change (tier, points balance, consent) as a slowly changing dimension: one row per customer and version, valid from its valid_from date up to (not including) valid_to, NULL while current. Each load closes the versions it changes as of its AS_OF; a customer's first version reaches back to sign-up.
SELECT
    customer_id,
    tier,
    tier_rank,
    points_balance,
    marketing_opt_in,
    CAST(signup_at AS DATE) AS signup_date
FROM {{ ref('dim_customers') }}
