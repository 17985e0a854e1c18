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
-- Per customer, straight from the facts. Amounts are summed exactly, to 1/10,000 of the
-- currency unit: a float sum's last bits follow the order the engine's threads add rows
-- in, which varies from one run to the next, and a model trained on the features would
-- differ with them.
tx AS (
    SELECT
        customer_id,
        MIN(occurred_at) AS first_at,
        MAX(occurred_at) FILTER (WHERE NOT is_refund) AS last_purchase_at,
        COUNT(*) FILTER (WHERE NOT is_refund) AS purchases_total,
        COUNT(*) FILTER (WHERE NOT is_refund AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '30 days') AS purchases_30d,
        COUNT(*) FILTER (WHERE NOT is_refund AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '60 days' AND occurred_at < CAST(:as_of_end AS TIMESTAMP) - INTERVAL '30 days') AS purchases_prev_30d,
        COUNT(*) FILTER (WHERE NOT is_refund AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '60 days') AS purchases_60d,
        COUNT(*) FILTER (WHERE NOT is_refund AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days') AS purchases_90d,
        COUNT(*) FILTER (WHERE NOT is_refund AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '180 days') AS purchases_180d,
        COUNT(*) FILTER (WHERE is_refund) AS refunds_total,
        CAST(SUM(CAST(amount AS DECIMAL(18, 4))) FILTER (WHERE NOT is_refund AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '30 days') AS DOUBLE PRECISION) AS spend_30d,
        CAST(SUM(CAST(amount AS DECIMAL(18, 4))) FILTER (WHERE NOT is_refund AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '60 days') AS DOUBLE PRECISION) AS spend_60d,
        CAST(SUM(CAST(amount AS DECIMAL(18, 4))) FILTER (WHERE NOT is_refund AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days') AS DOUBLE PRECISION) AS spend_90d,
        CAST(SUM(CAST(amount AS DECIMAL(18, 4))) FILTER (WHERE NOT is_refund AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '180 days') AS DOUBLE PRECISION) AS spend_180d,
        CAST(SUM(CAST(amount AS DECIMAL(18, 4))) FILTER (WHERE NOT is_refund) AS DOUBLE PRECISION) AS spend_total,
        -CAST(SUM(CAST(amount AS DECIMAL(18, 4))) FILTER (WHERE is_refund) AS DOUBLE PRECISION) AS refunded_total,
        CAST(SUM(CAST(amount AS DECIMAL(18, 4))) AS DOUBLE PRECISION) AS net_amount_total,
        CAST(SUM(CASE WHEN occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days' THEN CAST(amount AS DECIMAL(18, 4)) ELSE 0 END) AS DOUBLE PRECISION) AS net_amount_90d
    FROM {{ ref('fct_transactions') }} t
    WHERE occurred_at < CAST(:as_of_end AS TIMESTAMP)
    GROUP BY customer_id
),
-- The first day of data: a window reaching before it is marked missing (NULL), not short.
span AS (
    SELECT CAST(CAST(MIN(first_at) AS DATE) AS TIMESTAMP) AS first_day FROM tx
),
-- Each customer's purchase days once: AS_OF_END is a midnight, so the windows of days
-- below are the windows of timestamps above.
purchase_days AS (
    SELECT DISTINCT customer_id, CAST(occurred_at AS DATE) AS day
    FROM {{ ref('fct_transactions') }} t
    WHERE occurred_at < CAST(:as_of_end AS TIMESTAMP) AND NOT is_refund
),
purchase_day_stats AS (
    SELECT
        customer_id,
        COUNT(*) FILTER (WHERE day >= CAST(:as_of_end AS DATE) - 30) AS purchase_days_30d,
        COUNT(*) FILTER (WHERE day >= CAST(:as_of_end AS DATE) - 60) AS purchase_days_60d,
        COUNT(*) FILTER (WHERE day >= CAST(:as_of_end AS DATE) - 90) AS purchase_days_90d,
        COUNT(*) FILTER (WHERE day >= CAST(:as_of_end AS DATE) - 180) AS purchase_days_180d,
        COUNT(*) AS purchase_days_total,
        MIN(day) AS first_day,
        MAX(day) AS last_day
    FROM purchase_days
    GROUP BY customer_id
),
-- The gaps between a customer's purchase days add up to the last day less the first, so
-- they need no ordering of the days (an ordered window over them cost as much as a pass
-- over the facts): that sum on the first day's row, averaged over every day but the last,
-- is AVG over the gaps, with the same sum and count and so the same double on each engine.
gap_stats AS (
    SELECT
        d.customer_id,
        CAST(AVG(CASE WHEN d.day = s.first_day THEN s.last_day - s.first_day ELSE 0 END) AS DOUBLE PRECISION) AS mean_gap_days,
        MAX(s.last_day) - MAX(d.day) AS last_gap_days
    FROM purchase_days d
    JOIN purchase_day_stats s ON s.customer_id = d.customer_id AND d.day < s.last_day
    GROUP BY d.customer_id
),
category_spend AS (
    SELECT customer_id, category, SUM(CAST(amount AS DECIMAL(18, 4))) AS gross_amount
    FROM {{ ref('fct_transactions') }} t
    WHERE occurred_at < CAST(:as_of_end AS TIMESTAMP) AND NOT is_refund AND category IS NOT NULL
    GROUP BY customer_id, category
),
category_stats AS (
    SELECT customer_id, COUNT(*) AS categories, SUM(gross_amount) AS gross_total, MAX(gross_amount) AS top_amount
    FROM category_spend
    GROUP BY customer_id
),
-- The category of the largest spend, the first name among equals: a join on the largest
-- amount costs less than ranking every category in a window.
top_category AS (
    SELECT
        s.customer_id,
        MIN(c.category) AS category,
        CAST(MAX(s.top_amount) AS DOUBLE PRECISION) / NULLIF(CAST(MAX(s.gross_total) AS DOUBLE PRECISION), 0) AS spend_share,
        MAX(s.categories) AS categories
    FROM category_spend c
    JOIN category_stats s ON s.customer_id = c.customer_id AND c.gross_amount = s.top_amount
    GROUP BY s.customer_id
),
email AS (
    SELECT
        customer_id,
        COUNT(*) FILTER (WHERE event_type = 'sent' AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days') AS emails_sent_90d,
        COUNT(*) FILTER (WHERE event_type = 'open' AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days') AS opens_90d,
        COUNT(*) FILTER (WHERE event_type = 'click' AND occurred_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days') AS clicks_90d,
        MAX(CASE WHEN event_type IN ('open', 'click') THEN occurred_at END) AS last_engaged_at,
        COUNT(*) FILTER (WHERE event_type IN ('unsubscribe', 'complaint')) > 0 AS has_opted_out
    FROM {{ ref('fct_engagement_events') }} e
    WHERE occurred_at < CAST(:as_of_end AS TIMESTAMP)
    GROUP BY customer_id
),
redeemed AS (
    SELECT
        customer_id,
        COUNT(*) AS redemptions_total,
        COUNT(*) FILTER (WHERE redeemed_at >= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days') AS redemptions_90d,
        COALESCE(SUM(points_spent), 0) AS points_spent_total
    FROM {{ ref('fct_redemptions') }} r
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
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '30 days' THEN COALESCE(days.purchase_days_30d, 0) END AS purchase_days_30d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '30 days' THEN COALESCE(tx.spend_30d, 0) END AS spend_30d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '60 days' THEN COALESCE(tx.purchases_60d, 0) END AS purchases_60d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '60 days' THEN COALESCE(days.purchase_days_60d, 0) END AS purchase_days_60d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '60 days' THEN COALESCE(tx.spend_60d, 0) END AS spend_60d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days' THEN COALESCE(tx.purchases_90d, 0) END AS purchases_90d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days' THEN COALESCE(days.purchase_days_90d, 0) END AS purchase_days_90d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '90 days' THEN COALESCE(tx.spend_90d, 0) END AS spend_90d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '180 days' THEN COALESCE(tx.purchases_180d, 0) END AS purchases_180d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '180 days' THEN COALESCE(days.purchase_days_180d, 0) END AS purchase_days_180d,
    CASE WHEN span.first_day <= CAST(:as_of_end AS TIMESTAMP) - INTERVAL '180 days' THEN COALESCE(tx.spend_180d, 0) END AS spend_180d,
    COALESCE(days.purchase_days_total, 0) AS purchase_days_total,
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
LEFT JOIN purchase_day_stats days ON days.customer_id = c.customer_id
LEFT JOIN top_category ON top_category.customer_id = c.customer_id
LEFT JOIN email ON email.customer_id = c.customer_id
LEFT JOIN redeemed ON redeemed.customer_id = c.customer_id
LEFT JOIN gap_stats ON gap_stats.customer_id = c.customer_id
CROSS JOIN span
