-- schema: marts
-- materialized: table
-- group: warehouse
-- description: Engagement events of known customers: the ingested ones, the emails this product sent, and the events providers posted to the API that no landing file brought already (same event id).
SELECT e.*
FROM (
    SELECT event_id, customer_id, event_type, occurred_at, occurred_date, message_id, campaign, channel
    FROM {{ ref('stg_engagement_events') }}
    UNION ALL
    SELECT
        event_id,
        customer_id,
        'sent' AS event_type,
        occurred_at,
        CAST(occurred_at AS DATE) AS occurred_date,
        message_id,
        campaign,
        'email' AS channel
    FROM {{ source('raw', 'email_sends') }}
    UNION ALL
    SELECT
        p.event_id,
        p.customer_id,
        p.event_type,
        p.occurred_at,
        CAST(p.occurred_at AS DATE) AS occurred_date,
        p.message_id,
        p.campaign,
        'email' AS channel
    FROM {{ source('raw', 'provider_events') }} p
    WHERE NOT EXISTS (
        SELECT 1 FROM {{ ref('stg_engagement_events') }} s WHERE s.event_id = p.event_id
    )
) e
JOIN {{ ref('dim_customers') }} c ON c.customer_id = e.customer_id
