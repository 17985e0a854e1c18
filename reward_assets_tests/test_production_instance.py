"""The production instance of deploy/dagster.yaml on a real PostgreSQL.

Runs, events, partition status and sensor cursors land in PostgreSQL; the instance
survives a database restart; and the whole graph runs on a PostgreSQL warehouse with the
multiprocess executor, several steps at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from reward_assets.definitions import defs
from reward_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from reward_assets.pipeline import materialize_all, refresh_job
from reward_assets_tests.landing_builders import write_basic_landing

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEPLOY_YAML = PROJECT_ROOT / "deploy" / "dagster.yaml"
DAYS = {"2023-03-01", "2023-03-02", "2023-03-03"}
SNAPSHOTS_AND_DAILY = "key:customers or key:rewards or tag:partitioned=daily"

pytestmark = pytest.mark.postgres


def libpq_url(url: str) -> str:
    """dagster-postgres takes a plain postgresql:// URL (it picks its own driver)."""
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(False)


def production_home(root: Path, pg_url: str, monkeypatch) -> Path:
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_YAML, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", libpq_url(pg_url))
    return home


def use_stores(monkeypatch, data_dir: Path, warehouse_url: str) -> None:
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)


def run_slice(instance, selection: str = SNAPSHOTS_AND_DAILY):
    return materialize_all(
        defs(), instance, dt.date(2023, 3, 1), dt.date(2023, 3, 3), selection=selection
    )


SENSOR_LOCATION = """
import dagster as dg


@dg.asset
def probe():
    return None


@dg.sensor(target=[probe])
def probe_sensor(context):
    return dg.SkipReason("only its cursor matters here")


defs = dg.Definitions(assets=[probe], sensors=[probe_sensor])
"""


def test_runs_events_partitions_and_sensor_cursors_are_stored_in_postgres(
    tmp_path, pg_url, monkeypatch
):
    home = production_home(tmp_path, pg_url, monkeypatch)
    write_basic_landing(tmp_path / "data")
    use_stores(monkeypatch, tmp_path / "data", f"duckdb:///{tmp_path / 'w.duckdb'}")

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_retries_enabled and instance.run_monitoring_enabled
        summary = run_slice(instance)
        assert summary.success

    # A second instance, built from the same file, reads it all back from PostgreSQL.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()  # the snapshots' run, then the days' (pipeline.layers)
        assert sorted(r.run_id for r in runs) == sorted(summary.run_ids)
        assert len(runs) == 2 and all(run.is_success for run in runs)
        materialized = instance.get_materialized_partitions(dg.AssetKey("transactions"))
        assert materialized == DAYS

    location = tmp_path / "probe_location.py"
    location.write_text(SENSOR_LOCATION)
    subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "sensor",
            "cursor",
            "probe_sensor",
            "--set",
            "2023-03-03",
            "-f",
            str(location),
        ],
        env=os.environ | {"DAGSTER_HOME": str(home)},
        check=True,
        capture_output=True,
        timeout=120,
    )
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            events = conn.execute(
                sa.text("SELECT COUNT(*) FROM event_logs WHERE run_id = ANY(:r)"),
                {"r": summary.run_ids},
            ).scalar()
            instigators = conn.execute(sa.text("SELECT instigator_body FROM instigators")).scalars()
            bodies = list(instigators)
    finally:
        engine.dispose()
    assert events > 50
    assert any("probe_sensor" in body and "2023-03-03" in body for body in bodies)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayPostgres:
    """A PostgreSQL cluster of the test's own, on a free port (never the shared server)."""

    def __init__(self):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            pytest.skip("no PostgreSQL server binaries (initdb) on this machine")
        self.bin = Path(found[-1]).parent
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="reward-pg-"))
        self.data = self.dir / "data"
        self.user = None
        if os.geteuid() == 0:  # the server refuses to run as root
            self.user = "postgres"
            account = pwd.getpwnam(self.user)
            os.chown(self.dir, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def throwaway_postgres(pg_server_url):
    cluster = ThrowawayPostgres()
    try:
        yield cluster
    finally:
        cluster.destroy()


def test_instance_survives_a_database_restart(tmp_path, throwaway_postgres, monkeypatch):
    home = production_home(tmp_path, throwaway_postgres.url, monkeypatch)
    write_basic_landing(tmp_path / "data")
    use_stores(monkeypatch, tmp_path / "data", f"duckdb:///{tmp_path / 'w.duckdb'}")

    with dg.DagsterInstance.from_config(str(home)) as instance:
        first = run_slice(instance, selection="key:customers or key:rewards")
        assert first.success
        events_before = len(instance.all_logs(first.run_id))

        throwaway_postgres.stop()
        with pytest.raises(Exception, match="(?i)connect|server|refused"):
            instance.get_runs()
        throwaway_postgres.start()

        # No manual step: the same instance object carries on.
        second = run_slice(instance)
        assert second.success
        runs = {run.run_id: run for run in instance.get_runs()}
        assert set(runs) == {*first.run_ids, *second.run_ids}
        assert all(run.is_success for run in runs.values())
        assert len(instance.all_logs(first.run_id)) == events_before
        assert instance.get_materialized_partitions(dg.AssetKey("transactions")) == DAYS


def test_whole_graph_on_a_postgres_warehouse_runs_steps_in_parallel(tmp_path, pg_url, monkeypatch):
    home = production_home(tmp_path, pg_url, monkeypatch)
    write_basic_landing(tmp_path / "data")
    use_stores(monkeypatch, tmp_path / "data", pg_url)  # EXECUTOR=auto: multiprocess here

    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.execute_job(
            dg.reconstructable(refresh_job),
            instance=instance,
            tags={RANGE_START_TAG: "2023-03-01", RANGE_END_TAG: "2023-03-03"},
        )
        assert result.success
        stats = [s for s in instance.get_run_step_stats(result.run_id) if s.end_time]
        starts = [
            e
            for e in instance.all_logs(result.run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"
        ]

    assert len(stats) == len(defs().resolve_job_def("daily_refresh_job").nodes_in_topological_order)
    pids = {e.dagster_event.pid for e in starts}
    assert os.getpid() not in pids and len(pids) == len(starts) > 1
    intervals = sorted((s.start_time, s.end_time) for s in stats)
    overlapping = any(b[0] < a[1] for a, b in zip(intervals, intervals[1:], strict=False))
    assert overlapping, "no two steps ran at the same time"

    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            features = conn.execute(sa.text("SELECT COUNT(*) FROM marts.customer_features"))
            assert features.scalar() == 3
    finally:
        engine.dispose()
