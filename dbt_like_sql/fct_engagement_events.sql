-- schema: marts
-- materialized: table
-- group: warehouse
-- description: Engagement events of known customers.
SELECT e.*
FROM {{ ref('stg_engagement_events') }} e
JOIN {{ ref('dim_customers') }} c ON c.customer_id = e.customer_id
