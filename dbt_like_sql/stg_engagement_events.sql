-- schema: staging
-- materialized: view
-- partition_column: occurred_at
-- group: staging
-- description: A view over raw.engagement_events: email engagement events (sent, delivered, open, click, bounce, unsubscribe, complaint).
SELECT
    event_id,
    customer_id,
    event_type,
    occurred_at,
    CAST(occurred_at AS DATE) AS occurred_date,
    message_id,
    campaign,
    COALESCE(LOWER(channel), 'email') AS channel
FROM {{ source('raw', 'engagement_events') }}
