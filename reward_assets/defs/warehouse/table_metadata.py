"""What the Dagster UI shows of a warehouse table: its qualified name and its columns
with their types, read from the table itself after it was written."""

import dagster as dg

from reward_assets.warehouse.store import Warehouse


def table_metadata(warehouse: Warehouse, table: str) -> dict:
    """`dagster/table_name` and `dagster/column_schema` of `table` (schema.name), or
    nothing when the table does not exist (a first build a blocking check rejected)."""
    if not warehouse.table_exists(table):
        return {}
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name, type=kind) for name, kind in warehouse.columns(table)]
    )
    return {
        "dagster/table_name": warehouse.qualified_name(table),
        "dagster/column_schema": schema,
    }
