-- schema: marts
-- materialized: table
-- group: warehouse
-- description: One row per customer signed up by AS_OF: recency, frequency, monetary value net of refunds over 30/60/90/180 days and all history (a window reaching before the first day of data is NULL), purchase days, basket, inter-purchase gaps, refund share, category mix, engagement rates and tenure from events up to AS_OF only; tier, balance and consent as they were on AS_OF (dim_customers_history).
WITH customers AS (
    SELECT
        c.customer_id, h.tier, h.tier_rank, h.points_balance, h.marketing_opt_in, c.is_holdout,
        c.signup_at, h.valid_from AS attributes_valid_from
    FROM {{ ref('dim_customers') }} c
    LEFT JOIN {{ ref('dim_customers_history') }} h
        ON h.customer_id = c.customer_id
        AND h.valid_from <= CAST(:as_of AS DATE)
        AND (h.valid_to IS NULL OR h.valid_to > CAST(:as_of AS DATE))
    WHERE c.signup_at < CAST(:as_of_end AS TIMESTAMP)
),
-- One row per customer and day: the windows below start at midnight (AS_OF_END is one), so
-- every count and distinct day comes from these rows, one pass over the facts instead of
-- a distinct count per window.
tx_days AS (
    SELECT
        customer_id,
        CAST(occurred_at AS DATE) AS day,
        COUNT(*) FILTER (WHERE NOT is_refund) AS purchases,
        COUNT(*) FILTER (WHERE is_refund) AS refunds,
        MAX(occurred_at) FILTER (WHERE NOT is_refund) AS last_purchase_at
    FROM {{ ref('fct_transactions') }}
    WHERE occurred_at < CAST(:as_of_end AS TIMESTAMP)
    GROUP BY customer_id, CAST(occurred_at AS DATE)
),
tx_counts AS (
    SELECT
        customer_id,
        MAX(last_purchase_at) AS last_purchase_at,
        CAST(SUM(purchases) AS BIGINT) AS purchases_total,
        CAST(SUM(purchases) FILTER (WHERE day >= CAST(:as_of_end AS DATE) - 30) AS BIGINT) AS purchases_30d,
        CAST(SUM(purchases) FILTER (WHERE day >= CAST(:as_of_end AS DATE) - 60 AND day < CAST(:as_of_end AS DATE) - 30) AS BIGINT) AS purchases_prev_30d,
        CAST(SUM(purchases) FILTER (WHERE day >= CAST(:as_of_end AS DATE) - 90) AS BIGINT) AS purchases_90d,
        CAST(SUM(refunds) AS BIGINT) AS refunds_total,
        COUNT(*) FILTER (WHERE purchases > 0 AND day >= CAST(:as_of_end AS DATE) - 30) AS purchase_days_30d,
        COUNT(*) FILTER (WHERE purchases > 0 AND day >= CAST(:as_of_end AS DATE) - 60) AS purchase_days_60d,
        COUNT(*) FILTER (WHERE purchases > 0 AND day >= CAST(:as_of_end AS DATE) - 90) AS purchase_days_90d,
        COUNT(*) FILTER (WHERE purchases > 0 AND day >= CAST(:as_of_end AS DATE) - 180) AS purchase_days_180d,
        CAST(SUM(purchases) FILTER (WHERE day >= CAST(:as_of_end AS DATE) - 60) AS BIGINT) AS purchases_60d,
        CAST(SUM(purchases) FILTER (WHERE day >= CAST(:as_of_end AS DATE) - 180) AS BIGINT) AS purchases_180d,
        COUNT(*) FILTER (WHERE purchases > 0) AS purchase_days_total
    FROM tx_days
    GROUP BY customer_id
),
-- Amounts summed exactly, to 1/10,000 of the currency unit: a float sum's last bits
-- follow the order the engine's threads add rows in, which varies from one run to the
-- next, and a model trained on the features would differ with them.
tx_amounts AS (
    SELECT
        customer_id,
        CAST(SUM(CAST(amount AS DECIMAL(18, 4))) FILTER (WHERE NOT is_refund AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '30 days') AS DOUBLE PRECISION) AS spend_30d,
        CAST(SUM(CAST(amount AS DECIMAL(18, 4))) FILTER (WHERE NOT is_refund AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '60 days') AS DOUBLE PRECISION) AS spend_60d,
        CAST(SUM(CAST(amount AS DECIMAL(18, 4))) FILTER (WHERE NOT is_refund AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days') AS DOUBLE PRECISION) AS spend_90d,
        CAST(SUM(CAST(amount AS DECIMAL(18, 4))) FILTER (WHERE NOT is_refund AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '180 days') AS DOUBLE PRECISION) AS spend_180d,
        CAST(SUM(CAST(amount AS DECIMAL(18, 4))) FILTER (WHERE NOT is_refund) AS DOUBLE PRECISION) AS spend_total,
        -CAST(SUM(CAST(amount AS DECIMAL(18, 4))) FILTER (WHERE is_refund) AS DOUBLE PRECISION) AS refunded_total,
        CAST(SUM(CAST(amount AS DECIMAL(18, 4))) AS DOUBLE PRECISION) AS net_amount_total,
        CAST(SUM(CASE WHEN occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days' THEN CAST(amount AS DECIMAL(18, 4)) ELSE 0 END) AS DOUBLE PRECISION) AS net_amount_90d
    FROM {{ ref('fct_transactions') }}
    WHERE occurred_at < CAST(:as_of_end AS TIMESTAMP)
    GROUP BY customer_id
),
tx AS (
    SELECT
        c.*, a.spend_30d, a.spend_60d, a.spend_90d, a.spend_180d, a.spend_total,
        a.refunded_total, a.net_amount_total, a.net_amount_90d
    FROM tx_counts c
    JOIN tx_amounts a ON a.customer_id = c.customer_id
),
-- The first day of data: a window reaching before it is marked missing (NULL), not short.
span AS (
    SELECT CAST(MIN(day) AS TIMESTAMP) AS first_day FROM tx_days
),
gaps AS (
    SELECT
        customer_id,
        day - LAG(day) OVER purchase_days AS gap,
        -- One ordering for both: the last purchase day is the one with no next.
        LEAD(day) OVER purchase_days IS NULL AS is_last
    FROM tx_days
    WHERE purchases > 0
    WINDOW purchase_days AS (PARTITION BY customer_id ORDER BY day)
),
gap_stats AS (
    SELECT
        customer_id,
        CAST(AVG(gap) AS DOUBLE PRECISION) AS mean_gap_days,
        MAX(CASE WHEN is_last THEN gap END) AS last_gap_days
    FROM gaps
    GROUP BY customer_id
),
category_spend AS (
    SELECT customer_id, category, SUM(CAST(amount AS DECIMAL(18, 4))) AS gross_amount
    FROM {{ ref('fct_transactions') }}
    WHERE occurred_at < CAST(:as_of_end AS TIMESTAMP) AND NOT is_refund AND category IS NOT NULL
    GROUP BY customer_id, category
),
top_category AS (
    SELECT customer_id, category, spend_share, categories
    FROM (
        SELECT
            customer_id,
            category,
            CAST(gross_amount AS DOUBLE PRECISION)
                / NULLIF(CAST(SUM(gross_amount) OVER (PARTITION BY customer_id) AS DOUBLE PRECISION), 0) AS spend_share,
            COUNT(*) OVER (PARTITION BY customer_id) AS categories,
            ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY gross_amount DESC, category) AS position
        FROM category_spend
    ) ranked
    WHERE position = 1
),
email AS (
    SELECT
        customer_id,
        COUNT(*) FILTER (WHERE event_type = 'sent' AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days') AS emails_sent_90d,
        COUNT(*) FILTER (WHERE event_type = 'open' AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days') AS opens_90d,
        COUNT(*) FILTER (WHERE event_type = 'click' AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days') AS clicks_90d,
        MAX(CASE WHEN event_type IN ('open', 'click') THEN occurred_at END) AS last_engaged_at,
        COUNT(*) FILTER (WHERE event_type IN ('unsubscribe', 'complaint')) > 0 AS has_opted_out
    FROM {{ ref('fct_engagement_events') }}
    WHERE occurred_at < CAST(:as_of_end AS TIMESTAMP)
    GROUP BY customer_id
),
redeemed AS (
    SELECT
        customer_id,
        COUNT(*) AS redemptions_total,
        COUNT(*) FILTER (WHERE redeemed_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days') AS redemptions_90d,
        COALESCE(SUM(points_spent), 0) AS points_spent_total
    FROM {{ ref('fct_redemptions') }}
    WHERE redeemed_at < CAST(:as_of_end AS TIMESTAMP)
    GROUP BY customer_id
)
SELECT
    c.customer_id,
    CAST(:as_of AS DATE) AS as_of,
    c.tier,
    c.tier_rank,
    c.points_balance,
    c.marketing_opt_in,
    c.is_holdout,
    c.attributes_valid_from,
    CAST(:as_of AS DATE) - CAST(c.signup_at AS DATE) AS tenure_days,
    tx.last_purchase_at IS NOT NULL AS has_purchased,
    COALESCE(CAST(:as_of AS DATE) - CAST(tx.last_purchase_at AS DATE), CAST(:as_of AS DATE) - CAST(c.signup_at AS DATE)) AS recency_days,
    COALESCE(tx.purchases_total, 0) AS purchases_total,
    COALESCE(tx.purchases_30d, 0) AS purchases_30d,
    COALESCE(tx.purchases_prev_30d, 0) AS purchases_prev_30d,
    COALESCE(tx.purchases_90d, 0) AS frequency_90d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '30 days' THEN COALESCE(tx.purchase_days_30d, 0) END AS purchase_days_30d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '30 days' THEN COALESCE(tx.spend_30d, 0) END AS spend_30d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '60 days' THEN COALESCE(tx.purchases_60d, 0) END AS purchases_60d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '60 days' THEN COALESCE(tx.purchase_days_60d, 0) END AS purchase_days_60d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '60 days' THEN COALESCE(tx.spend_60d, 0) END AS spend_60d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days' THEN COALESCE(tx.purchases_90d, 0) END AS purchases_90d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days' THEN COALESCE(tx.purchase_days_90d, 0) END AS purchase_days_90d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days' THEN COALESCE(tx.spend_90d, 0) END AS spend_90d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '180 days' THEN COALESCE(tx.purchases_180d, 0) END AS purchases_180d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '180 days' THEN COALESCE(tx.purchase_days_180d, 0) END AS purchase_days_180d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '180 days' THEN COALESCE(tx.spend_180d, 0) END AS spend_180d,
    COALESCE(tx.purchase_days_total, 0) AS purchase_days_total,
    COALESCE(tx.spend_total, 0) AS spend_total,
    CAST(tx.spend_total AS DOUBLE PRECISION) / NULLIF(tx.purchases_total, 0) AS avg_basket,
    gap_stats.mean_gap_days,
    gap_stats.last_gap_days,
    -- How overdue the next purchase is against the customer's usual rhythm.
    (CAST(:as_of AS DATE) - CAST(tx.last_purchase_at AS DATE)) / NULLIF(gap_stats.mean_gap_days, 0) AS recency_gap_ratio,
    CAST(COALESCE(tx.refunded_total, 0) AS DOUBLE PRECISION) / NULLIF(tx.spend_total, 0) AS refund_share,
    CAST(:as_of AS DATE) - CAST(span.first_day AS DATE) + 1 AS history_days,
    COALESCE(tx.refunds_total, 0) AS refunds_total,
    COALESCE(tx.net_amount_total, 0) AS monetary_total,
    COALESCE(tx.net_amount_90d, 0) AS monetary_90d,
    top_category.category AS top_category,
    top_category.spend_share AS top_category_share,
    COALESCE(top_category.categories, 0) AS categories_bought,
    COALESCE(email.emails_sent_90d, 0) AS emails_sent_90d,
    COALESCE(email.opens_90d, 0) AS opens_90d,
    COALESCE(email.clicks_90d, 0) AS clicks_90d,
    CAST(email.opens_90d AS DOUBLE PRECISION) / NULLIF(email.emails_sent_90d, 0) AS open_rate_90d,
    CAST(email.clicks_90d AS DOUBLE PRECISION) / NULLIF(email.emails_sent_90d, 0) AS click_rate_90d,
    CAST(:as_of AS DATE) - CAST(email.last_engaged_at AS DATE) AS days_since_engagement,
    COALESCE(email.has_opted_out, FALSE) AS has_opted_out,
    COALESCE(redeemed.redemptions_total, 0) AS redemptions_total,
    COALESCE(redeemed.redemptions_90d, 0) AS redemptions_90d,
    COALESCE(redeemed.points_spent_total, 0) AS points_spent_total
FROM customers c
LEFT JOIN tx ON tx.customer_id = c.customer_id
LEFT JOIN top_category ON top_category.customer_id = c.customer_id
LEFT JOIN email ON email.customer_id = c.customer_id
LEFT JOIN redeemed ON redeemed.customer_id = c.customer_id
LEFT JOIN gap_stats ON gap_stats.customer_id = c.customer_id
CROSS JOIN span
