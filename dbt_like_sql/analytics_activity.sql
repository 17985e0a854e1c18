-- schema: analytics
-- materialized: partitioned
-- partition_column: day
-- group: analytics
-- description: Customers per day: new sign-ups and active customers (a purchase, a redemption, or an email opened or clicked that day), with each kind of activity on its own.
WITH acts AS (
    SELECT occurred_date AS day, customer_id, 'purchase' AS kind
    FROM {{ ref('fct_transactions') }}
    WHERE NOT is_refund AND occurred_at >= :partition_start AND occurred_at < :partition_end
    UNION ALL
    SELECT redeemed_date, customer_id, 'redemption'
    FROM {{ ref('fct_redemptions') }}
    WHERE redeemed_at >= :partition_start AND redeemed_at < :partition_end
    UNION ALL
    SELECT occurred_date, customer_id, 'email'
    FROM {{ ref('fct_engagement_events') }}
    WHERE event_type IN ('open', 'click')
        AND occurred_at >= :partition_start AND occurred_at < :partition_end
),
per_customer AS (
    SELECT
        day,
        customer_id,
        MAX(CASE WHEN kind = 'purchase' THEN 1 ELSE 0 END) AS purchased,
        MAX(CASE WHEN kind = 'redemption' THEN 1 ELSE 0 END) AS redeemed,
        MAX(CASE WHEN kind = 'email' THEN 1 ELSE 0 END) AS engaged
    FROM acts
    GROUP BY day, customer_id
),
active AS (
    SELECT
        day,
        COUNT(*) AS active_customers,
        COUNT(CASE WHEN purchased = 1 THEN 1 END) AS purchasing_customers,
        COUNT(CASE WHEN redeemed = 1 THEN 1 END) AS redeeming_customers,
        COUNT(CASE WHEN engaged = 1 THEN 1 END) AS engaged_customers
    FROM per_customer
    GROUP BY day
),
signups AS (
    SELECT signup_date AS day, COUNT(*) AS new_customers
    FROM {{ ref('dim_customers') }}
    WHERE signup_at >= :partition_start AND signup_at < :partition_end
    GROUP BY signup_date
)
SELECT
    COALESCE(a.day, s.day) AS day,
    COALESCE(a.active_customers, 0) AS active_customers,
    COALESCE(a.purchasing_customers, 0) AS purchasing_customers,
    COALESCE(a.redeeming_customers, 0) AS redeeming_customers,
    COALESCE(a.engaged_customers, 0) AS engaged_customers,
    COALESCE(s.new_customers, 0) AS new_customers
FROM active a
FULL OUTER JOIN signups s ON s.day = a.day
