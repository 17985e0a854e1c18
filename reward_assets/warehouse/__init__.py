"""The warehouse: one SQLAlchemy engine, the SQL models of dbt_like_sql/, snapshots."""
