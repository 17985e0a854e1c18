"""The local instance's event log (dagster_home/dagster.yaml): Dagster's SQLite storage, with
a batch of asset events written in one transaction per database instead of one per event.

A range run records one materialisation per partitioned asset and day. Stock
`SqliteEventLogStorage.store_event_batch` stores them one by one, and every event opens
and closes its own engine on the run's database and again on the index database, each
close checkpointing the WAL to disk: that, not the rows, was the cost of a year's
backfill (docs/architecture.md, "Per-partition overhead"). Dagster hands a step's
per-partition events over as one batch when DAGSTER_EVENT_BATCH_SIZE is above 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from dagster._config import Field, StringSource
from dagster._core.events import ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.instance import DagsterInstance
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._serdes import ConfigurableClassData

# Dagster's own switch; with it at 0 (its default) no batch ever reaches the storage.
EVENT_BATCH_SWITCH = "DAGSTER_EVENT_BATCH_SIZE"
# A year of days fits in one batch; Dagster also ends a batch with the step's last partition.
EVENT_BATCH_SIZE = "1000"


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """Stores what the stock storage stores, row for row, in the same databases.

    Without `base_dir` (as dagster_home/dagster.yaml leaves it) the databases go where
    Dagster puts a home's event log by default, history/runs/ under the instance's own
    directory, which is known once the instance registers: an existing home reads on
    unchanged, and an instance made from another directory keeps its events there.
    """

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        self._pending_inst_data = inst_data
        if base_dir is not None:
            super().__init__(base_dir, inst_data)

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> BatchingSqliteEventLogStorage:
        return cls(base_dir=config_value.get("base_dir"), inst_data=inst_data)

    def register_instance(self, instance: DagsterInstance) -> None:
        if not hasattr(self, "_base_dir"):
            runs = os.path.join(instance.root_directory, "history", "runs", "")
            super().__init__(runs, self._pending_inst_data)
        super().register_instance(instance)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        run_ids = {event.run_id for event in events}
        if len(run_ids) != 1 or not all(_is_asset_event(event) for event in events):
            # Check evaluations and anything else keep the stock path, event by event.
            super().store_event_batch(events)
            return
        rows = [self._event_to_row(event) for event in events]
        # The run's own log, then the cross-run index, as `store_event` does for each event.
        with self.run_connection(run_ids.pop()) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        with self.index_transaction() as conn:
            event_ids = [
                conn.execute(SqlEventLogStorageTable.insert().values(**row)).inserted_primary_key[0]
                for row in rows
            ]
            self._store_asset_event_tags(conn, events, event_ids)
            # An asset's row takes its columns from the last event of each type that sets them,
            # so the last event per asset and type, in their order, leaves the row as
            # event-by-event updates would (Dagster's PostgreSQL batch does the same).
            last: dict[tuple, tuple[EventLogEntry, int]] = {}
            for event, event_id in zip(events, event_ids, strict=True):
                key = (event.dagster_event.asset_key, event.dagster_event.event_type)
                last.pop(key, None)
                last[key] = (event, event_id)
            for event, event_id in last.values():
                self._store_asset_event(conn, event, event_id)


def _is_asset_event(event: EventLogEntry) -> bool:
    """What stock `store_event` mirrors into the index as an asset event, and nothing else."""
    dagster_event = event.dagster_event
    return (
        dagster_event is not None
        and dagster_event.event_type in ASSET_EVENTS
        and dagster_event.asset_key is not None
    )
