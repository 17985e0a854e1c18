-- schema: staging
-- materialized: view
-- group: staging
-- description: A view over raw.provider_events: the email events providers posted to the API, typed as the landed ones, each flagged `landed` when a landing file brought an event with the same id (fct_engagement_events keeps the landed one).
-- The ids landed among the provider events' few, by a join the engine can build on the
-- provider side: an EXISTS per provider event hashed every landed event instead. It reads
-- raw.engagement_events, not the view over it, which PostgreSQL could then not replace.
SELECT
    p.event_id,
    p.customer_id,
    p.event_type,
    p.occurred_at,
    CAST(p.occurred_at AS DATE) AS occurred_date,
    p.message_id,
    p.campaign,
    'email' AS channel,
    l.event_id IS NOT NULL AS landed
FROM {{ source('raw', 'provider_events') }} p
LEFT JOIN (
    SELECT DISTINCT s.event_id
    FROM {{ source('raw', 'engagement_events') }} s
    JOIN {{ source('raw', 'provider_events') }} q ON q.event_id = s.event_id
) l ON l.event_id = p.event_id
