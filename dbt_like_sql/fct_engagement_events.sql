-- schema: marts
-- materialized: incremental
-- partition_column: occurred_at
-- incremental_on: dim_customers(customer_id) stg_provider_events(event_id, customer_id, event_type, occurred_at, message_id, campaign, landed)
-- group: warehouse
-- description: Engagement events of known customers: the ingested ones, the emails this product sent, and the events providers posted to the API that no landing file brought already (same event id).
-- A provider event is kept or dropped by a landed event of any date, so a load's window
-- does not reach it: it is rebuilt by its id, whenever its row or its `landed` flag in
-- stg_provider_events changed since the last build.
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
    SELECT event_id, customer_id, event_type, occurred_at, occurred_date, message_id, campaign, channel
    FROM {{ ref('stg_provider_events') }}
    WHERE NOT landed
) e
JOIN {{ ref('dim_customers') }} c ON c.customer_id = e.customer_id
