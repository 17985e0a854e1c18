-- schema: marts
-- materialized: incremental
-- partition_column: occurred_at
-- incremental_on: dim_customers(customer_id)
-- group: warehouse
-- description: Transactions of known customers; rows of customers not yet known wait in held_rows and join here once the customer arrives.
SELECT t.*
FROM {{ ref('stg_transactions') }} t
JOIN {{ ref('dim_customers') }} c ON c.customer_id = t.customer_id
