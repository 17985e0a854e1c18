"""Prepare the warehouse and the operational store before the services start.

    python deploy/init_stores.py

The compose file's `init` service runs it once, after `dagster instance migrate`, before
any long-lived process starts: it creates the warehouse's schemas, and upgrades the
operational store to the code's schema revision (`alembic upgrade head`, every row kept;
on an empty database that creates the tables). The services refuse a PostgreSQL store at
an older revision, so a new version of the code is deployed by running this first. It
fails first if UNSUBSCRIBE_SECRET is the public default, which the services refuse outside
the embedded demo. Safe to run again: what is there already is left as it is.
"""

from __future__ import annotations

import sqlalchemy as sa

from reward_assets.email.unsubscribe import signing_secret
from reward_assets.ops import migrate
from reward_assets.ops.store import OpsStore
from reward_assets.settings import Settings
from reward_assets.warehouse.store import SCHEMAS, open_warehouse


def _shown(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def main() -> None:
    settings = Settings()
    # The services would refuse a public unsubscribe secret one by one: stop here instead.
    signing_secret(settings)
    warehouse_url = settings.resolved_warehouse_url()
    with open_warehouse(warehouse_url) as warehouse:
        warehouse.ensure_schemas()
    print(f"warehouse {_shown(warehouse_url)}: schemas {', '.join(SCHEMAS)}")

    ops_url = settings.resolved_ops_db_url()
    store = OpsStore(ops_url)
    try:
        before = migrate.current(store.engine)
        after = migrate.upgrade(store.engine)
        tables = sorted(sa.inspect(store.engine).get_table_names())
    finally:
        store.dispose()
    print(
        f"operational store {_shown(ops_url)}: revision {before or 'none'} -> {after}, "
        f"tables {', '.join(tables)}"
    )


if __name__ == "__main__":
    main()
