-- schema: analytics
-- materialized: partitioned
-- partition_column: day
-- group: analytics
-- description: The email funnel per day: messages sent, delivered, opened, clicked, unsubscribed, bounced and complained about (each message counted once per event type and day, on the day the event happened), with rates against that day's sends and deliveries.
SELECT
    day,
    sent,
    delivered,
    opened,
    clicked,
    unsubscribed,
    bounced,
    complained,
    CAST(delivered AS DOUBLE PRECISION) / NULLIF(sent, 0) AS delivery_rate,
    CAST(opened AS DOUBLE PRECISION) / NULLIF(delivered, 0) AS open_rate,
    CAST(clicked AS DOUBLE PRECISION) / NULLIF(delivered, 0) AS click_rate,
    CAST(clicked AS DOUBLE PRECISION) / NULLIF(opened, 0) AS click_to_open_rate,
    CAST(unsubscribed AS DOUBLE PRECISION) / NULLIF(delivered, 0) AS unsubscribe_rate,
    CAST(bounced AS DOUBLE PRECISION) / NULLIF(sent, 0) AS bounce_rate
FROM (
    SELECT
        day,
        COUNT(CASE WHEN event_type = 'sent' THEN 1 END) AS sent,
        COUNT(CASE WHEN event_type = 'delivered' THEN 1 END) AS delivered,
        COUNT(CASE WHEN event_type = 'open' THEN 1 END) AS opened,
        COUNT(CASE WHEN event_type = 'click' THEN 1 END) AS clicked,
        COUNT(CASE WHEN event_type = 'unsubscribe' THEN 1 END) AS unsubscribed,
        COUNT(CASE WHEN event_type = 'bounce' THEN 1 END) AS bounced,
        COUNT(CASE WHEN event_type = 'complaint' THEN 1 END) AS complained
    FROM (
        -- One row per message, event type and day; an event without a message id stands
        -- for a message of its own.
        SELECT
            occurred_date AS day, event_type, COALESCE(message_id, 'event:' || event_id) AS message
        FROM {{ ref('fct_engagement_events') }}
        WHERE channel = 'email'
            AND occurred_at >= :partition_start AND occurred_at < :partition_end
        GROUP BY 1, 2, 3
    ) e
    GROUP BY day
) f
