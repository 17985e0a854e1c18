"""What the two Dagster instances (`dagster_home/dagster.yaml` for the DuckDB default,
`deploy/dagster.yaml` for production) do with the project's runs and logs.

Every op that opens the warehouse is in the `warehouse` pool, the copy-writing ops in the
one their backend calls for; with the local instance's run queue (the real daemon's
dequeue step), a run that never opens DuckDB starts while a warehouse run is in progress,
and a second warehouse run waits for the first. And the project's warnings (a mail server
outage, an uncertain send) land in the run's event log on both instances.
"""

from __future__ import annotations

import ast
import datetime as dt
import os
import socket
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.test_utils import create_run_for_test, create_test_daemon_workspace_context
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)

import reward_assets
from reward_assets.defs.pools import LLM_POOL, WAREHOUSE_POOL
from reward_assets.email.outbox import Message, Outbox
from reward_assets.ops.store import open_ops_store, outbox, to_db

ROOT = Path(__file__).resolve().parents[1]
LOCAL_YAML = ROOT / "dagster_home" / "dagster.yaml"
DEPLOY_YAML = ROOT / "deploy" / "dagster.yaml"
COPY_WRITING_OPS = {"engagement_messages", "welcome_new_customers"}


def op_pools() -> dict[str, tuple[str | None, bool]]:
    """Each op of the code location's jobs: (its pool, whether it opens the warehouse)."""
    from reward_assets.definitions import defs

    found = {}
    for job in defs().resolve_all_job_defs():
        for node in job.nodes_in_topological_order:
            op = node.definition
            found[op.name] = (op.pool, "warehouse" in op.required_resource_keys)
    return found


def test_every_op_that_opens_the_warehouse_is_in_its_pool():
    pools = op_pools()
    assert len(pools) > 40
    opens = {name for name, (_, warehouse) in pools.items() if warehouse}
    assert opens >= COPY_WRITING_OPS
    # On the DuckDB default (these tests' settings) every one of them, the copy-writing ops
    # included, is in the warehouse pool; the ops that never open it are in none.
    assert {name: pool for name, (pool, w) in pools.items() if w and pool != WAREHOUSE_POOL} == {}
    assert {name: pool for name, (pool, w) in pools.items() if not w} == {
        "deliver_due_emails": None,
        "engagement_messages_no_uncertain_emails": None,  # reads the outbox only
    }


def test_on_postgresql_the_copy_writing_ops_are_in_the_llm_pool(tmp_path):
    script = (
        "from reward_assets_tests.test_dagster_instances import op_pools\n"
        "print(sorted((n, p) for n, (p, w) in op_pools().items() if w))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WAREHOUSE_URL": "postgresql+psycopg://reward@db.example:5432/warehouse",
        "DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    pools = dict(ast.literal_eval(done.stdout.strip().splitlines()[-1]))
    assert {n: p for n, p in pools.items() if n in COPY_WRITING_OPS} == dict.fromkeys(
        COPY_WRITING_OPS, LLM_POOL
    )
    assert {p for n, p in pools.items() if n not in COPY_WRITING_OPS} == {WAREHOUSE_POOL}


def instance_home(tmp_path: Path, source: Path, **extra) -> Path:
    """A DAGSTER_HOME holding the instance file `source`, plus `extra` top-level keys."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = yaml.safe_load(source.read_text()) | extra
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


def test_the_local_instance_queues_warehouse_runs_and_lets_delivery_run_beside_them(tmp_path):
    # The local instance as it is, with a launcher that records instead of starting
    # processes: what is tested is which queued runs the daemon's dequeue step picks.
    home = instance_home(
        tmp_path,
        LOCAL_YAML,
        run_launcher={"module": "dagster._core.test_utils", "class": "MockedRunLauncher"},
    )
    target = ModuleTarget(
        module_name="reward_assets.definitions",
        attribute=None,
        working_directory=str(ROOT),
        location_name="reward_assets",
    )
    # What `make dev` does first: the pools' limits written into the instance (the daemon
    # applies dagster.yaml's default_limit only from the second time it meets a pool).
    for pool in (WAREHOUSE_POOL, LLM_POOL):
        subprocess.run(
            [
                Path(sys.executable).with_name("dagster"),
                "instance",
                "concurrency",
                "set",
                pool,
                "1",
            ],
            env={**os.environ, "DAGSTER_HOME": str(home)},
            check=True,
            capture_output=True,
        )
    with (
        dg.DagsterInstance.from_config(str(home)) as instance,
        create_test_daemon_workspace_context(target, instance) as workspace,
    ):
        location = workspace.create_request_context().get_code_location("reward_assets")
        (repository,) = location.get_repositories().values()

        def run_of(job_name: str, status: DagsterRunStatus) -> str:
            job = repository.get_full_job(job_name)
            plan = location.get_execution_plan(
                remote_job=job,
                run_config={},
                step_keys_to_execute=None,
                known_state=None,
                instance=instance,
            )
            return create_run_for_test(
                instance,
                job_name=job_name,
                status=status,
                job_snapshot=job.job_snapshot,
                execution_plan_snapshot=plan.execution_plan_snapshot,
                remote_job_origin=job.get_remote_origin(),
                job_code_origin=job.get_python_origin(),
            ).run_id

        def dequeue() -> None:
            list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(workspace))

        def status(run_id: str) -> DagsterRunStatus:
            return instance.get_run_by_id(run_id).status

        # A long warehouse run in progress (a backfill, the cycle), another one queued
        # behind it, and delivery.
        running = run_of("engagement_cycle_job", DagsterRunStatus.STARTED)
        scoring = run_of("daily_scoring_job", DagsterRunStatus.QUEUED)
        delivery = run_of("delivery_job", DagsterRunStatus.QUEUED)
        dequeue()
        assert status(delivery) == DagsterRunStatus.STARTING
        assert status(scoring) == DagsterRunStatus.QUEUED

        # The warehouse run ends: the next one goes.
        instance.report_run_canceled(instance.get_run_by_id(running))
        dequeue()
        assert status(scoring) == DagsterRunStatus.STARTING


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def undeliverable(tmp_path, monkeypatch):
    """An outbox with a message due and one whose send was interrupted long ago, and a
    mail server that is down."""
    url = f"sqlite:///{tmp_path / 'ops.sqlite'}"
    monkeypatch.setenv("OPS_DB_URL", url)
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(closed_port()))
    monkeypatch.setenv("SMTP_STARTTLS", "false")
    monkeypatch.setenv("UNSUBSCRIBE_SECRET", "instance-test-secret")
    monkeypatch.setenv("QUIET_HOURS_START", "0")
    monkeypatch.setenv("QUIET_HOURS_END", "0")
    monkeypatch.setenv("HOLDOUT_SHARE", "0")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with open_ops_store(url) as store:
        Outbox(store).enqueue(
            [
                Message(
                    customer_id=customer_id,
                    campaign="welcome",
                    occurrence="once",
                    send_at=past,
                    timezone="UTC",
                    to_address=f"{customer_id}@example.com",
                    subject="Welcome",
                    preheader="p",
                    text_body="t",
                    html_body="<p>h</p>",
                    reward_ids=(),
                    content_source="template",
                )
                for customer_id in ("c1", "c2")
            ]
        )
        with store.begin() as conn:
            conn.execute(
                sa.update(outbox)
                .where(outbox.c.customer_id == "c2")
                .values(status="sending", lease_until=to_db(past))
            )


def warnings_in_event_log(instance: dg.DagsterInstance) -> list[str]:
    from reward_assets.definitions import defs

    result = defs().resolve_job_def("delivery_job").execute_in_process(instance=instance)
    assert result.success
    return [
        record.user_message
        for record in instance.all_logs(result.run_id)
        if record.level == 30 and not record.is_dagster_event  # logging.WARNING
    ]


def test_warnings_reach_the_event_log_of_the_local_instance(tmp_path, undeliverable):
    with dg.DagsterInstance.from_config(str(instance_home(tmp_path, LOCAL_YAML))) as instance:
        found = warnings_in_event_log(instance)
    assert any("mail server unavailable" in message for message in found), found
    assert any("became uncertain: c2:welcome:once" in message for message in found), found

    # The same run on an instance without the python_logs section: nothing reaches it.
    config = yaml.safe_load(LOCAL_YAML.read_text())
    del config["python_logs"]
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "dagster.yaml").write_text(yaml.safe_dump(config))
    with open_ops_store(os.environ["OPS_DB_URL"]) as store, store.begin() as conn:
        conn.execute(
            sa.update(outbox).values(status="queued", claimed_by=None, next_attempt_at=None)
        )
    with dg.DagsterInstance.from_config(str(bare)) as instance:
        assert warnings_in_event_log(instance) == []


@pytest.mark.postgres
def test_warnings_reach_the_event_log_of_the_production_instance(
    tmp_path, undeliverable, pg_url, monkeypatch
):
    libpq = sa.engine.make_url(pg_url).set(drivername="postgresql").render_as_string(False)
    monkeypatch.setenv("DAGSTER_PG_URL", libpq)
    with dg.DagsterInstance.from_config(str(instance_home(tmp_path, DEPLOY_YAML))) as instance:
        found = warnings_in_event_log(instance)
    assert any("mail server unavailable" in message for message in found), found
    assert any("became uncertain" in message for message in found), found


@pytest.mark.parametrize("source", [LOCAL_YAML, DEPLOY_YAML], ids=["local", "production"])
def test_every_module_that_logs_is_under_a_managed_logger(source):
    """The LLM writer's and delivery's loggers, and any other module's: all captured."""
    managed = yaml.safe_load(source.read_text())["python_logs"]["managed_python_loggers"]
    package = Path(reward_assets.__file__).parent
    logging_modules = [
        ".".join(path.relative_to(package.parent).with_suffix("").parts)
        for path in package.rglob("*.py")
        if "logging.getLogger(__name__)" in path.read_text()
    ]
    assert {"reward_assets.content.writer", "reward_assets.email.delivery"} <= set(logging_modules)
    assert [
        m for m in logging_modules if not any(m == n or m.startswith(f"{n}.") for n in managed)
    ] == []
