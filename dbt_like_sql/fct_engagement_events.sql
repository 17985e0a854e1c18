-- schema: marts
-- materialized: table
-- group: warehouse
-- description: Engagement events of known customers: the ingested ones and the emails this product sent.
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
) e
JOIN {{ ref('dim_customers') }} c ON c.customer_id = e.customer_id
