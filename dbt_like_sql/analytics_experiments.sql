-- schema: analytics
-- materialized: table
-- group: analytics
-- description: Content experiments per variant and send day: the emails sent in each arm and how many of them were opened, clicked, and followed by redemptions within 7 days of the send (with the sum of squares of redemptions per email the report's 95% interval needs). Opens are shown but not judged: mail privacy pre-fetching inflates them.
WITH sends AS (
    SELECT event_id, customer_id, message_id, occurred_at AS sent_at, campaign, experiment, variant
    FROM {{ source('raw', 'email_sends') }}
    WHERE experiment IS NOT NULL
),
engaged AS (
    SELECT
        s.event_id,
        MAX(CASE WHEN e.event_type = 'open' THEN 1 ELSE 0 END) AS opened,
        MAX(CASE WHEN e.event_type = 'click' THEN 1 ELSE 0 END) AS clicked
    FROM sends s
    JOIN {{ ref('fct_engagement_events') }} e
        ON e.message_id = s.message_id
        AND e.occurred_at >= s.sent_at
        AND e.occurred_at < s.sent_at + INTERVAL '7 days'
    WHERE e.event_type IN ('open', 'click')
    GROUP BY s.event_id
),
redeemed AS (
    SELECT s.event_id, COUNT(*) AS redemptions
    FROM sends s
    JOIN {{ ref('fct_redemptions') }} r
        ON r.customer_id = s.customer_id
        AND r.redeemed_at >= s.sent_at
        AND r.redeemed_at < s.sent_at + INTERVAL '7 days'
    GROUP BY s.event_id
)
SELECT
    s.experiment,
    s.variant,
    s.campaign,
    CAST(s.sent_at AS DATE) AS sent_date,
    CAST(COUNT(*) AS BIGINT) AS sends,
    CAST(SUM(COALESCE(g.opened, 0)) AS BIGINT) AS opened,
    CAST(SUM(COALESCE(g.clicked, 0)) AS BIGINT) AS clicked,
    CAST(SUM(COALESCE(r.redemptions, 0)) AS BIGINT) AS redemptions,
    CAST(SUM(COALESCE(r.redemptions, 0) * COALESCE(r.redemptions, 0)) AS BIGINT) AS redemptions_sum_sq
FROM sends s
LEFT JOIN engaged g ON g.event_id = s.event_id
LEFT JOIN redeemed r ON r.event_id = s.event_id
GROUP BY s.experiment, s.variant, s.campaign, CAST(s.sent_at AS DATE)
