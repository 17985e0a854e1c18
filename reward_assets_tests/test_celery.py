"""The daily refresh with EXECUTOR=celery: its steps run on Celery workers through
dagster-celery's own executor, and the warehouse it builds equals the in-process run's.

Needs PostgreSQL (the `pg_url` fixture) and a RabbitMQ broker (CELERY_BROKER_URL, default
the settings' pyamqp://guest:guest@127.0.0.1:5672//). Without a reachable broker the
test is skipped, visibly; CI sets REQUIRE_CELERY=1, which turns that skip into a failure.

Two workers are started the way deploy/CELERY.md tells operators to, with
deploy/celery.yaml. They listen on dagster-celery's default queue, `dagster`: the executor
sends every step there (only an op tag `dagster-celery/queue` moves a step elsewhere). So
the test holds a machine-wide lock against a concurrent run of itself and refuses a
broker where other workers already consume that queue: they would take its steps.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import kombu
import psutil
import pytest
import sqlalchemy as sa

from reward_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from reward_assets.pipeline import refresh_job, warehouse_summary
from reward_assets.settings import Settings
from reward_assets.warehouse.store import Warehouse
from reward_assets_tests.conftest import fresh_database
from reward_assets_tests.landing_builders import write_basic_landing

pytestmark = [
    pytest.mark.postgres,
    # dagster-celery registers its step task again for each step it submits; Celery 5.7
    # warns, and keeps the first (identical) one.
    pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning"),
]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEPLOY_YAML = PROJECT_ROOT / "deploy" / "dagster.yaml"
CELERY_YAML = PROJECT_ROOT / "deploy" / "celery.yaml"
VENV_BIN = Path(sys.executable).parent  # dagster-celery runs a bare `celery` from PATH
DEFAULT_BROKER = Settings.model_fields["celery_broker_url"].default
BACKEND = "rpc://"
QUEUE = "dagster"  # dagster-celery's default queue (dagster_celery.defaults)
TAGS = {RANGE_START_TAG: "2023-03-01", RANGE_END_TAG: "2023-03-03"}
WORKERS = 2
LOCK_TIMEOUT = 120  # a concurrent run of this test holds the broker's `dagster` queue
READY_TIMEOUT = 60  # both workers connected and consuming
RUN_TIMEOUT = 120  # the whole run on the workers
STOP_TIMEOUT = 20  # warm shutdown, then SIGKILL


def broker_url() -> str:
    return os.environ.get("CELERY_BROKER_URL") or DEFAULT_BROKER


def skip_or_fail(message: str) -> None:
    if os.environ.get("REQUIRE_CELERY") == "1":
        pytest.fail(message)
    pytest.skip(message)


def libpq_url(url: str) -> str:
    """dagster-postgres takes a plain postgresql:// URL (it picks its own driver)."""
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(False)


@contextlib.contextmanager
def deadline(seconds: int, what: str) -> Iterator[None]:
    """Raise TimeoutError in the test if `what` is not done within `seconds`."""

    def expire(signum, frame):
        raise TimeoutError(f"{what} took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def queue_state(conn: kombu.Connection) -> tuple[int, int]:
    """Ready messages and consumers of the queue (none of either if it does not exist)."""
    try:
        _, messages, consumers = conn.channel().queue_declare(QUEUE, passive=True)
    except conn.channel_errors:
        return 0, 0
    return messages, consumers


def purge_unconsumed(url: str) -> None:
    """Drop tasks nobody will take: left by an aborted run, they would reach our workers."""
    with kombu.Connection(url, connect_timeout=3) as conn:
        messages, consumers = queue_state(conn)
        if messages and not consumers:
            conn.channel().queue_purge(QUEUE)


@contextlib.contextmanager
def exclusive_broker_queue(url: str) -> Iterator[None]:
    """The `dagster` queue of the broker for this test alone, empty, with no consumer."""
    lock_path = Path(tempfile.gettempdir()) / "reward-assets-celery-test.lock"
    with lock_path.open("w") as lock:
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - start > LOCK_TIMEOUT:
                    pytest.fail(f"another run of this test held {lock_path} for {LOCK_TIMEOUT} s")
                time.sleep(0.5)
        try:
            with kombu.Connection(url, connect_timeout=3) as conn:
                try:
                    conn.ensure_connection(max_retries=1, timeout=5)
                except Exception as error:
                    skip_or_fail(
                        f"RabbitMQ not reachable at {conn.as_uri()} ({error}); start it "
                        "(`rabbitmq-server -detached`) or set CELERY_BROKER_URL"
                    )
                _, consumers = queue_state(conn)
                if consumers:
                    skip_or_fail(
                        f"{consumers} Celery worker(s) already consume queue {QUEUE!r} on "
                        f"{conn.as_uri()}: they would take this test's steps; stop them first"
                    )
            purge_unconsumed(url)
            try:
                yield
            finally:
                purge_unconsumed(url)  # steps sent but never taken, if the run failed
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path

    def tree(self) -> set[int]:
        """The worker's processes: the CLI, the Celery main process, its pool children."""
        try:
            root = psutil.Process(self.process.pid)
            return {root.pid, *(child.pid for child in root.children(recursive=True))}
        except psutil.NoSuchProcess:
            return set()

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def worker_command(name: str) -> list[str]:
    return [
        str(VENV_BIN / "dagster-celery"),
        "worker",
        "start",
        "-A",
        "dagster_celery.app",
        "-y",
        str(CELERY_YAML),
        "--name",
        name,
        "--",
        "--concurrency=1",
    ]


def stop(workers: list[Worker]) -> None:
    """SIGTERM each worker's process group (warm shutdown), then SIGKILL what is left."""
    members = []
    for pid in (pid for worker in workers for pid in worker.tree()):
        with contextlib.suppress(psutil.NoSuchProcess):
            members.append(psutil.Process(pid))
    for worker in workers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.process.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(members, timeout=STOP_TIMEOUT)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=5)
    for worker in workers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=5)


@contextlib.contextmanager
def celery_workers(env: dict[str, str], cwd: Path, log_dir: Path) -> Iterator[list[Worker]]:
    token = uuid.uuid4().hex[:8]
    workers: list[Worker] = []
    try:
        for index in range(1, WORKERS + 1):
            name = f"reward-test-{token}-{index}"
            log = log_dir / f"{name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    worker_command(name),
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, stopped as a whole
                )
            workers.append(Worker(name, process, log))
        pending = {w.name: re.compile(rf"{re.escape(w.name)}@\S+ ready\.") for w in workers}
        start = time.monotonic()
        while pending:
            for worker in workers:
                if worker.name in pending and pending[worker.name].search(worker.log_tail()):
                    del pending[worker.name]
                elif worker.process.poll() is not None:
                    pytest.fail(f"worker {worker.name} exited early:\n{worker.log_tail()}")
            if pending and time.monotonic() - start > READY_TIMEOUT:
                logs = "\n".join(w.log_tail() for w in workers)
                pytest.fail(f"workers {sorted(pending)} not ready in {READY_TIMEOUT} s:\n{logs}")
            time.sleep(0.2)
        yield workers
    finally:
        stop(workers)


@pytest.fixture
def reference_pg_url(pg_server_url):
    """A second fresh database, for the in-process run, dropped after the test."""
    with fresh_database(pg_server_url) as url:
        yield url


def cell(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "NULL"
    if isinstance(value, float):
        return f"{value:.9f}"
    return str(value)


def warehouse_state(url: str) -> tuple[dict[str, int], list, list[tuple[str, ...]]]:
    """Rows per raw/staging/marts table, quarantine by reason, and customer_features."""
    warehouse = Warehouse(url)
    try:
        counts, quarantine = warehouse_summary(warehouse)
        features = warehouse.frame("SELECT * FROM marts.customer_features")
    finally:
        warehouse.dispose()
    rows = sorted(tuple(cell(v) for v in row) for row in features.itertuples(index=False))
    return counts, quarantine, [tuple(features.columns), *rows]


def step_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key -> the Celery worker that reported executing it (its engine event)."""
    taken = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        metadata = record.dagster_event.event_specific_data.metadata
        if record.step_key and "Celery worker" in metadata:
            taken[record.step_key] = metadata["Celery worker"].value
    return taken


def run_errors(instance: dg.DagsterInstance, run_id: str) -> str:
    """The run's error-level events with their errors, for a failure message."""
    lines = []
    for record in instance.all_logs(run_id):
        if record.level < logging.ERROR:
            continue
        data = record.dagster_event.event_specific_data if record.dagster_event else None
        error = getattr(data, "error", None)
        lines.append(f"[{record.step_key or 'run'}] {record.user_message}")
        if error:
            lines.append(error.to_string())
    return "\n".join(lines)


def test_refresh_runs_its_steps_on_two_celery_workers_and_matches_in_process(
    tmp_path, pg_url, reference_pg_url, monkeypatch
):
    broker = broker_url()
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(DEPLOY_YAML, home / "dagster.yaml")
    data = tmp_path / "data"
    write_basic_landing(data)
    # One database for both: Dagster's tables live in `public`, the warehouse's in
    # raw/staging/marts.
    stores = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": libpq_url(pg_url),
        "WAREHOUSE_URL": pg_url,
        "DATA_DIR": str(data),
        "EXECUTOR": "celery",
        "CELERY_BROKER_URL": broker,
        "CELERY_BACKEND_URL": BACKEND,
    }
    for name, value in stores.items():
        monkeypatch.setenv(name, value)
    # The workers run where the test runs (conftest's tmp_path, no .env) so they read the
    # same settings; the code location comes from the installed project.
    worker_env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }

    # The instance is opened first: it creates Dagster's tables, which two workers starting
    # at once on an empty database would race to create.
    with (
        dg.DagsterInstance.from_config(str(home)) as instance,
        exclusive_broker_queue(broker),
        celery_workers(worker_env, Path.cwd(), tmp_path) as workers,
    ):
        started = time.monotonic()
        with deadline(RUN_TIMEOUT, "the run on the Celery workers"):
            result = dg.execute_job(dg.reconstructable(refresh_job), instance=instance, tags=TAGS)
        run_seconds = time.monotonic() - started
        assert result.success, f"celery run failed:\n{run_errors(instance, result.run_id)}"
        trees = {w.name: w.tree() for w in workers}
        step_starts = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_START)
        taken = step_workers(instance, result.run_id)
        transactions_days = instance.get_materialized_partitions(dg.AssetKey("transactions"))

    assert result.job_def.executor_def.name == "celery"
    assert transactions_days == {"2023-03-01", "2023-03-02", "2023-03-03"}
    # Every step of the job started in a process of one of the two workers: the one whose
    # name the step's "Executing steps ... in celery worker" event carries.
    step_keys = {node.name for node in refresh_job().nodes_in_topological_order}
    started_keys = {record.step_key for record in step_starts}
    assert started_keys == step_keys == set(taken), (started_keys, taken)
    for record in step_starts:
        pid = record.dagster_event.pid
        worker = taken[record.step_key].split("@")[0]
        assert pid != os.getpid(), record.step_key
        assert pid in trees[worker], (record.step_key, pid, worker, trees)
    busy = {worker.split("@")[0] for worker in taken.values()}
    assert busy == set(trees), f"only {busy} took steps ({run_seconds:.0f} s): {taken}"

    # The same landing, the same job, in-process into a second database.
    monkeypatch.setenv("WAREHOUSE_URL", reference_pg_url)
    monkeypatch.setenv("EXECUTOR", "in_process")
    with dg.DagsterInstance.ephemeral() as ephemeral:
        reference = refresh_job().execute_in_process(instance=ephemeral, tags=TAGS)
    assert reference.success

    on_celery = warehouse_state(pg_url)
    in_process = warehouse_state(reference_pg_url)
    counts, _, features = on_celery
    assert counts["marts.customer_features"] == 3
    assert len(features) == 1 + 3  # the header, a row per customer
    assert on_celery == in_process
