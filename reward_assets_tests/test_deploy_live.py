"""The services' own commands from docker-compose.yml, run as local processes (PostgreSQL).

On a throwaway cluster initialised by deploy/postgres-init.sql, the services' own commands
from the compose file start as local processes, wired the way the compose file wires them
(service names become 127.0.0.1, container paths become local folders; see
`reward_assets_tests.deploy_stack`): the init service, the user-code gRPC server, the daemon
and the webserver on workspace.yaml, the API. A run submitted to the queue is launched by the
daemon through the default run launcher inside the code server's process tree, and its email
reaches the SMTP server standing in for mailpit.
"""

import datetime as dt
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import dagster as dg
import psutil
import pytest
import sqlalchemy as sa
import yaml

from reward_assets.api.data import POSTGRESQL
from reward_assets.contact.holdout import is_holdout
from reward_assets.contact.timing import in_quiet_hours
from reward_assets.email.mailer import message_id_for
from reward_assets.email.outbox import Message, Outbox
from reward_assets.ops.store import open_ops_store
from reward_assets.warehouse.store import SCHEMAS
from reward_assets_tests.deploy_files import ROOT, SECRETS, VENV_BIN, compose, read_dockerfile
from reward_assets_tests.deploy_stack import Stack, graphql, http_get, wait_for
from reward_assets_tests.smtp_server import SmtpServer, free_port
from reward_assets_tests.test_production_instance import ThrowawayPostgres


@pytest.fixture(scope="module")
def stack(pg_server_url, tmp_path_factory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("compose")
    image = read_dockerfile()
    services = compose()["services"]
    cluster = ThrowawayPostgres()
    smtp = SmtpServer()
    smtp.start()
    try:
        # The postgres image: POSTGRES_USER is the superuser, then the init scripts run.
        user = services["postgres"]["environment"]["POSTGRES_USER"]
        admin = sa.create_engine(cluster.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE ROLE {user} SUPERUSER LOGIN"))
        admin.dispose()
        (init_sql,) = [m.split(":")[0] for m in services["postgres"]["volumes"] if "initdb.d" in m]
        subprocess.run(
            [
                str(cluster.bin / "psql"),
                *("-v", "ON_ERROR_STOP=1", "--no-psqlrc", "-h", "127.0.0.1"),
                *("-p", str(cluster.port), "-U", user, "-d", "postgres", "-f", init_sql),
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=60,
        )
        home = root / "dagster_home"
        (home / "storage").mkdir(parents=True)
        shutil.copy(image.repo_path(f"{image.env['DAGSTER_HOME']}/dagster.yaml"), home)
        ports = {
            "postgres": {5432: cluster.port},
            "mailpit": {1025: smtp.port},
            "user-code": {4000: free_port()},
            "webserver": {3000: free_port()},
            "api": {8000: free_port()},
        }
        workspace = yaml.safe_load(
            image.repo_path(f"{image.env['DAGSTER_HOME']}/workspace.yaml").read_text()
        )
        for entry in workspace["load_from"]:
            server = entry["grpc_server"]
            server["port"] = ports[server["host"]][server["port"]]
            server["host"] = "127.0.0.1"
        (home / "workspace.yaml").write_text(yaml.safe_dump(workspace))
        volumes = {
            target: root / source
            for service in services.values()
            if "build" in service
            for source, target, *_ in (m.split(":") for m in service.get("volumes", []))
            if not target.startswith(image.env["DAGSTER_HOME"])
        }
        yield Stack(cluster, smtp, home, volumes, ports, services, image)
    finally:
        smtp.stop()
        cluster.destroy()


pg_test = pytest.mark.postgres


@pg_test
def test_init_creates_every_store_once_and_can_run_again(stack):
    first = stack.run("init")
    assert first.returncode == 0, first.stderr[-3000:]
    second = stack.run("init")  # every `docker compose up` runs it again
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Storage schema state after migration" in second.stdout
    assert SECRETS["POSTGRES_PASSWORD"] not in second.stdout + second.stderr

    env = stack.env("init")
    engine = sa.create_engine(env["DAGSTER_PG_URL"])
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"runs", "event_logs", "job_ticks", "instigators", "kvs"} <= tables

    engine = sa.create_engine(env["WAREHOUSE_URL"])
    try:
        assert set(SCHEMAS) <= set(sa.inspect(engine).get_schema_names())
    finally:
        engine.dispose()
    with open_ops_store(env["OPS_DB_URL"]) as store:
        assert {"outbox", "model_registry", "suppressions"} <= set(
            sa.inspect(store.engine).get_table_names()
        )


def awake_timezone(now: dt.datetime) -> str:
    """A zone where `now` is outside the default quiet hours (one of three always is)."""
    for zone in ("UTC", "Asia/Tokyo", "America/Los_Angeles"):
        if not in_quiet_hours(now, zone, 21, 8):
            return zone
    raise AssertionError("every zone is in quiet hours")


def queue_welcome(ops_url: str, email_from: str) -> Message:
    customer = next(f"deploy-{i}" for i in range(100) if not is_holdout(f"deploy-{i}"))
    now = dt.datetime.now(dt.UTC)
    message = Message(
        customer_id=customer,
        campaign="welcome",
        occurrence="once",
        send_at=now - dt.timedelta(minutes=1),
        timezone=awake_timezone(now),
        to_address=f"{customer}@example.com",
        subject="Welcome",
        preheader="Your first rewards",
        text_body="Hello",
        html_body="<p>Hello</p>",
        reward_ids=("r1",),
        content_source="template",
    )
    with open_ops_store(ops_url) as store:
        assert Outbox(store).enqueue([message]) == 1
    return message


@pg_test
def test_the_daemon_launches_runs_inside_the_code_server_and_mail_reaches_the_catcher(
    stack, monkeypatch
):
    assert stack.run("init").returncode == 0
    user_code_port = stack.ports["user-code"][4000]
    webserver_port = stack.ports["webserver"][3000]
    env = stack.env("user-code")
    message = queue_welcome(env["OPS_DB_URL"], env["EMAIL_FROM"])

    with stack.start("user-code") as code_server:
        wait_for(
            lambda: stack.healthcheck("user-code"),
            f"the code server's health check\n{stack.log('user-code')}",
            timeout=240,
            process=code_server,
        )
        with stack.start("daemon") as daemon, stack.start("webserver") as webserver:
            wait_for(
                lambda: stack.healthcheck("webserver"),
                f"the webserver's health check\n{stack.log('webserver')}",
                timeout=120,
                process=webserver,
            )
            wait_for(
                lambda: stack.healthcheck("daemon"),
                f"the daemon's health check\n{stack.log('daemon')}",
                timeout=120,
                process=daemon,
            )
            data = graphql(
                webserver_port,
                """{ workspaceOrError { ... on Workspace { locationEntries {
                    name loadStatus
                    locationOrLoadError { __typename ... on RepositoryLocation {
                      repositories { jobs { name } } } } } } } }""",
            )
            (entry,) = data["workspaceOrError"]["locationEntries"]
            assert (entry["name"], entry["loadStatus"]) == ("reward_assets", "LOADED")
            location = entry["locationOrLoadError"]
            jobs = {j["name"] for r in location["repositories"] for j in r["jobs"]}
            assert "delivery_job" in jobs

            run_id = str(uuid.uuid4())
            launch_env = stack.env("webserver")
            subprocess.run(
                [
                    str(VENV_BIN / "dagster"),
                    *("job", "launch", "-j", "delivery_job", "--run-id", run_id),
                    *("-w", str(stack.home / "workspace.yaml"), "-l", "reward_assets"),
                ],
                env=launch_env,
                cwd=ROOT,
                check=True,
                capture_output=True,
                timeout=180,
            )
            monkeypatch.setenv("DAGSTER_PG_URL", launch_env["DAGSTER_PG_URL"])
            server = psutil.Process(code_server.pid)
            seen: set[int] = set()
            with dg.DagsterInstance.from_config(str(stack.home)) as instance:
                assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
                assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"

                def finished():
                    seen.update(p.pid for p in server.children(recursive=True))
                    run = instance.get_run_by_id(run_id)
                    return run if run and run.is_finished else None

                run = wait_for(
                    finished,
                    f"the run\n{stack.log('daemon')}\n{stack.log('user-code')}",
                    timeout=300,
                    process=daemon,
                )
                events = instance.all_logs(run_id)
                errors = [e.message for e in events if e.level >= 40]
                assert run.is_success, errors

                # Launched by the daemon's default run launcher over gRPC, through the
                # workspace's code server, and run as that server's children.
                grpc_info = json.loads(run.tags[".dagster/grpc_info"])
                assert grpc_info["port"] == user_code_port
                pids = {e.dagster_event.pid for e in events if e.dagster_event} - {None}
                assert pids and pids <= seen, (pids, seen)
                assert daemon.pid not in pids and os.getpid() not in pids

            # The daemon evaluates sensors through the same server.
            subprocess.run(
                [
                    str(VENV_BIN / "dagster"),
                    *("sensor", "start", "new_customer_sensor"),
                    *("-w", str(stack.home / "workspace.yaml")),
                ],
                env=stack.env("daemon"),
                cwd=ROOT,
                check=True,
                capture_output=True,
                timeout=180,
            )
            with dg.DagsterInstance.from_config(str(stack.home)) as instance:

                def sensor_ticks():
                    """The sensor's ticks, once the latest has ended (it is STARTED meanwhile)."""
                    states = [
                        s
                        for s in instance.all_instigator_state()
                        if s.name == "new_customer_sensor"
                    ]
                    ticks = states and instance.get_ticks(
                        states[0].instigator_origin_id, states[0].selector_id
                    )
                    return ticks if ticks and ticks[0].status.value != "STARTED" else None

                ticks = wait_for(sensor_ticks, "a sensor tick", timeout=120, process=daemon)
                assert ticks[0].status.value in {"SKIPPED", "SUCCESS"}, ticks[0].error

    (received,) = stack.smtp.messages
    assert received["To"] == message.to_address
    assert received["Message-ID"] == message_id_for(message.key, env["EMAIL_FROM"])
    assert not any(folder.joinpath("outbox").exists() for folder in stack.volumes.values())


@pg_test
def test_the_api_serves_with_the_compose_command(stack):
    assert stack.run("init").returncode == 0
    port = stack.ports["api"][8000]
    with stack.start("api") as api:
        wait_for(
            lambda: stack.healthcheck("api"),
            f"the API's health check\n{stack.log('api')}",
            timeout=120,
            process=api,
        )
        body = http_get(f"http://127.0.0.1:{port}/health")
    # On the compose file's stores the API reads the PostgreSQL warehouse, not snapshots.
    assert json.loads(body)["backend"] == POSTGRESQL
