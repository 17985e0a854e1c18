"""Prepare the warehouse and the operational store before the services start.

    python deploy/init_stores.py

The compose file's `init` service runs it once, after `dagster instance migrate`, before
any long-lived process starts: on an empty PostgreSQL database two processes creating the
same tables at once race (the loser fails on PostgreSQL's catalogue), and the user-code
server, its runs and the API would all create the operational store's tables on first
use. Safe to run again: everything it creates is created only when missing.
"""

from __future__ import annotations

import sqlalchemy as sa

from reward_assets.ops.store import open_ops_store
from reward_assets.settings import Settings
from reward_assets.warehouse.store import SCHEMAS, open_warehouse


def _shown(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def main() -> None:
    settings = Settings()
    warehouse_url = settings.resolved_warehouse_url()
    with open_warehouse(warehouse_url) as warehouse:
        warehouse.ensure_schemas()
    print(f"warehouse {_shown(warehouse_url)}: schemas {', '.join(SCHEMAS)}")

    ops_url = settings.resolved_ops_db_url()
    with open_ops_store(ops_url) as store:
        tables = sorted(sa.inspect(store.engine).get_table_names())
    print(f"operational store {_shown(ops_url)}: tables {', '.join(tables)}")


if __name__ == "__main__":
    main()
