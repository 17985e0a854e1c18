-- Run once by the postgres image, as POSTGRES_USER, when its data volume is empty
-- (docker-compose.yml mounts this file into /docker-entrypoint-initdb.d/).
-- One database per store, so each can move to its own server later by changing one URL.
CREATE DATABASE dagster;    -- Dagster's runs, event log and schedules (DAGSTER_PG_URL)
CREATE DATABASE warehouse;  -- raw, staging, marts, ml, analytics (WAREHOUSE_URL)
CREATE DATABASE ops;        -- outbox, suppressions, model registry (OPS_DB_URL)
