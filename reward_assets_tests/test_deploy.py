"""The docker-compose deployment, proved as far as a machine without a Docker engine allows.

Read from the files: docker-compose.yml against the Compose Specification's JSON schema;
every command's executable, module and file against the project and what the Dockerfile
copies; every environment variable against the settings; the Dockerfile's install step
against CI's (`make install`); the published ports against the README's deploy section.

Run (PostgreSQL): on a throwaway cluster initialised by deploy/postgres-init.sql, the
services' own commands from the compose file start as local processes, wired the way the
compose file wires them (service names become 127.0.0.1, container paths become local
folders): the init service, the user-code gRPC server, the daemon and the webserver on
workspace.yaml, the API. A run submitted to the queue is launched by the daemon through
the default run launcher inside the code server's process tree, and its email reaches the
SMTP server standing in for mailpit.
"""

import contextlib
import datetime as dt
import hashlib
import importlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

import dagster as dg
import jsonschema
import psutil
import pytest
import sqlalchemy as sa
import yaml
from packaging.specifiers import SpecifierSet

from reward_assets.api.data import POSTGRESQL
from reward_assets.contact.holdout import is_holdout
from reward_assets.contact.timing import in_quiet_hours
from reward_assets.email.mailer import message_id_for
from reward_assets.email.outbox import Message, Outbox
from reward_assets.ops.store import open_ops_store
from reward_assets.settings import Settings
from reward_assets.warehouse.store import SCHEMAS
from reward_assets_tests.smtp_server import SmtpServer, free_port
from reward_assets_tests.test_production_instance import ThrowawayPostgres

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = ROOT / "deploy" / "compose-spec.json"
SCHEMA_NOTE = ROOT / "deploy" / "compose-spec.md"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
VENV_BIN = Path(sys.executable).parent
README_SECTION = "## Deploy with docker compose"
# Variables of Dagster itself and of the postgres image, besides the project's settings.
DAGSTER_VARIABLES = {"DAGSTER_HOME", "DAGSTER_PG_URL"}
POSTGRES_IMAGE_VARIABLES = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "PGDATA"}
# What a developer's .env holds besides .env.example's variables, for the interpolation.
SECRETS = {"POSTGRES_PASSWORD": "compose-test-password"}


# --- Reading the compose file the way Compose does -----------------------------------------


class MissingVariable(ValueError):
    pass


_NAME = r"[_a-zA-Z][_a-zA-Z0-9]*"


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e},
    ${VAR:+r}, ${VAR+r}, nested, and $$ for a literal dollar."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            out.append(_braced(text[i + 2 : end], env))
            i = end + 1
        elif match := re.compile(_NAME).match(text, i + 1):
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth, i = 1, start
    while i < len(text):
        if text.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unclosed ${{ in {text!r}")


def _braced(expression: str, env: Mapping[str, str]) -> str:
    match = re.fullmatch(rf"({_NAME})(?:(:?[-?+])(.*))?", expression, re.DOTALL)
    if not match:
        raise ValueError(f"invalid interpolation ${{{expression}}}")
    name, operator, argument = match.groups()
    value = env.get(name)
    if operator is None:
        return value or ""
    present = bool(value) if operator.startswith(":") else value is not None
    kind = operator[-1]
    if kind == "-":
        return value if present else interpolate(argument, env)
    if kind == "+":
        return interpolate(argument, env) if present else ""
    if not present:
        raise MissingVariable(f"{name}: {interpolate(argument, env)}")
    return value


def referenced_variables(node) -> set[str]:
    """Every variable a value of the compose file interpolates (keys are never interpolated)."""
    if isinstance(node, dict):
        return set().union(*(referenced_variables(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(referenced_variables(v) for v in node))
    if isinstance(node, str):
        return set(re.findall(rf"\$\{{?({_NAME})", node.replace("$$", "")))
    return set()


def interpolated(node, env: Mapping[str, str]):
    if isinstance(node, dict):
        return {k: interpolated(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolated(v, env) for v in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines the way Compose's env_file reads them (comments and blanks skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def documented_variables(path: Path) -> set[str]:
    """The variables .env.example names, set or shown commented out (`# DAGSTER_HOME=...`)."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", path.read_text(), re.MULTILINE))


def compose_raw() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def dotenv_from_example(**overrides: str) -> dict[str, str]:
    """The .env a user gets from the README's `cp .env.example .env` plus the secrets."""
    return read_dotenv(ENV_EXAMPLE) | SECRETS | overrides


def compose(dotenv: Mapping[str, str] | None = None) -> dict:
    return interpolated(compose_raw(), dotenv_from_example() if dotenv is None else dotenv)


def env_files(service: dict) -> list[str]:
    files = service.get("env_file", [])
    files = [files] if isinstance(files, str) else files
    return [f if isinstance(f, str) else f["path"] for f in files]


def command_of(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def sub_commands(command: list[str]) -> list[list[str]]:
    """`sh -c "a && b"` is the commands a and b; anything else is itself."""
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in command[2].split("&&")]
    return [command]


def option(command: list[str], *names: str) -> str | None:
    for i, arg in enumerate(command[:-1]):
        if arg in names:
            return command[i + 1]
    return None


# --- Reading the Dockerfile ------------------------------------------------------------------


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    dest: PurePosixPath


@dataclass(frozen=True)
class Image:
    base: str
    env: dict[str, str]
    workdir: PurePosixPath
    user: str | None
    runs: tuple[str, ...]
    copies: tuple[Copy, ...]

    def repo_path(self, image_path: str) -> Path | None:
        """The project file the image holds at `image_path`, if a COPY put it there."""
        target = PurePosixPath(image_path)
        for copy in reversed(self.copies):
            for source in copy.sources:
                local = ROOT / source
                multiple = len(copy.sources) > 1
                landed = copy.dest / PurePosixPath(source).name if multiple else copy.dest
                if local.is_file() and target == landed:
                    return local
                if local.is_dir() and (target == landed or landed in target.parents):
                    return local / target.relative_to(landed)
        return None

    def image_path(self, repo_file: Path) -> PurePosixPath | None:
        relative = repo_file.relative_to(ROOT).as_posix()
        for copy in self.copies:
            for source in copy.sources:
                if relative == source or relative.startswith(source.rstrip("/") + "/"):
                    multiple = len(copy.sources) > 1
                    landed = copy.dest / PurePosixPath(source).name if multiple else copy.dest
                    return landed / PurePosixPath(relative).relative_to(source)
        return None


def _expand(text: str, env: Mapping[str, str]) -> str:
    return re.sub(rf"\$\{{?({_NAME})\}}?", lambda m: env.get(m.group(1), m.group(0)), text)


def read_dockerfile() -> Image:
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    base, env, workdir, user, runs, copies = "", {}, PurePosixPath("/"), None, [], []
    for instruction in logical:
        keyword, _, rest = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base = rest.split()[0]
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = _expand(value, env)
        elif keyword == "WORKDIR":
            workdir = workdir / _expand(rest, env)
        elif keyword == "USER":
            user = rest.strip()
        elif keyword == "RUN":
            runs.append(_expand(rest, env))
        elif keyword == "COPY":
            *sources, dest = shlex.split(_expand(rest, env))
            copies.append(Copy(tuple(sources), workdir / dest))
    return Image(base, env, workdir, user, tuple(runs), tuple(copies))


def pip_installs(commands: list[list[str]]) -> list[list[str]]:
    """The arguments of each `python -m pip install`, without flags that only change output."""
    quiet = {"--quiet", "-q", "--no-cache-dir"}
    found = []
    for command in commands:
        if "pip" in command and "install" in command:
            start = command.index("install") + 1
            found.append([arg for arg in command[start:] if arg not in quiet])
    return found


def dockerfile_commands(image: Image) -> list[list[str]]:
    return [shlex.split(part) for run in image.runs for part in run.split("&&")]


def makefile_install_commands() -> list[list[str]]:
    """The recipe of the rule CI's `make install` runs (the virtual environment's stamp)."""
    text = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+) \??:?= ?(.*)$", text, re.MULTILINE))
    rule = re.search(r"^\$\(STAMP\):.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert rule, "Makefile: no $(STAMP) rule"

    def expand(line: str) -> str:
        for _ in range(3):  # BIN is defined through VENV
            line = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), line)
        return line

    return [shlex.split(expand(line.strip())) for line in rule.group(1).splitlines()]


# --- Static checks ---------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_specification():
    schema = json.loads(SCHEMA_FILE.read_text())
    recorded = re.search(r"SHA-256 of the vendored file: `([0-9a-f]{64})`", SCHEMA_NOTE.read_text())
    assert recorded, "deploy/compose-spec.md records no checksum"
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == recorded.group(1)
    validator = jsonschema.Draft7Validator(schema)

    # Compose validates after interpolation; the raw file must hold too.
    for document in (compose_raw(), compose()):
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(document)]
        assert errors == []

    # The validator is strict enough to catch what would break `docker compose up`.
    broken = compose()
    broken["services"]["webserver"]["depends_on"]["init"]["condition"] = "service_finished"
    broken["services"]["api"]["port"] = ["8000:8000"]
    assert len(list(validator.iter_errors(broken))) == 2


def test_services_volumes_and_dependencies_refer_to_what_exists():
    document = compose()
    services, volumes = document["services"], document["volumes"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).is_file(), f"{name}: {source} missing"
            else:
                assert source in volumes, f"{name}: volume {source} not declared"
        for env_file in env_files(service):
            # .env is the user's copy of .env.example (the README's first step).
            assert env_file == ".env" and ENV_EXAMPLE.is_file()

    # Every long-lived project process waits for the one-shot init to have succeeded, and
    # init for a healthy database: nothing creates Dagster's tables concurrently.
    image = compose_raw()["x-image"]["image"]
    project_services = {n for n, s in services.items() if s.get("image") == image}
    assert {"init", "user-code", "webserver", "daemon", "api"} <= project_services
    for name in project_services - {"init"}:
        assert services[name]["depends_on"]["init"] == {
            "condition": "service_completed_successfully"
        }
    assert services["init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "restart" not in services["init"]
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"]["user-code"]["condition"] == "service_healthy"


def test_every_command_runs_code_and_files_that_the_image_holds():
    image = read_dockerfile()
    document = compose()
    services = document["services"]
    project = {n: s for n, s in services.items() if "build" in s}
    assert project, "no service builds the project's image"
    checked_modules = set()
    for name, service in project.items():
        commands = sub_commands(command_of(service))
        health = service.get("healthcheck", {}).get("test", [])
        if health[:1] == ["CMD"]:
            commands.append(health[1:])
        for command in commands:
            executable = command[0]
            # The image installs the same pyproject.toml into its venv as CI into .venv.
            assert executable == "sh" or (VENV_BIN / executable).exists(), (
                f"{name}: {executable} is not installed by the project"
            )
            for arg in command[1:]:
                if arg.startswith("/"):
                    located = image.repo_path(arg)
                    assert located and located.exists(), f"{name}: the image has no {arg}"
            if executable == "python" and command[1].endswith(".py"):
                script = image.repo_path(str(image.workdir / command[1]))
                assert script and script.is_file(), f"{name}: {command[1]} missing"
            if module := option(command, "-m", "--module-name"):
                source = ROOT / (module.replace(".", "/") + ".py")
                assert source.is_file() and image.image_path(source), module
                checked_modules.add(module)
    assert "reward_assets.definitions" in checked_modules

    # DAGSTER_HOME holds the production instance and the workspace the processes name.
    home = PurePosixPath(services["webserver"]["environment"]["DAGSTER_HOME"])
    assert image.env["DAGSTER_HOME"] == str(home)
    assert image.repo_path(str(home / "dagster.yaml")) == ROOT / "deploy" / "dagster.yaml"
    workspace_file = option(command_of(services["daemon"]), "-w")
    assert workspace_file == option(command_of(services["webserver"]), "-w")
    assert image.repo_path(workspace_file) == ROOT / "deploy" / "workspace.yaml"

    # The workspace points at the code server's service name and port.
    (entry,) = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())["load_from"]
    server = entry["grpc_server"]
    code_server = command_of(services[server["host"]])
    assert code_server[:3] == ["dagster", "code-server", "start"]
    assert option(code_server, "-p", "--port") == str(server["port"])
    assert option(code_server, "-h", "--host") == "0.0.0.0"
    health = services[server["host"]]["healthcheck"]["test"]
    assert option(health, "-p", "--port") == str(server["port"])


def test_the_api_command_names_the_app_the_package_defines():
    api = compose()["services"]["api"]
    command = command_of(api)
    assert command[0] == "uvicorn"
    module, _, attribute = command[1].partition(":")
    source = ROOT / (module.replace(".", "/") + ".py")
    assert source.is_file(), f"{command[1]}: {source.relative_to(ROOT)} does not exist (yet)"
    assert read_dockerfile().image_path(source), f"the image does not hold {source}"

    app = getattr(importlib.import_module(module), attribute)
    paths = {getattr(route, "path", None) for route in app.routes}
    health_url = api["healthcheck"]["test"][-1]
    probed = re.search(r"http://127\.0\.0\.1:(\d+)(/[^'\"]*)", health_url)
    assert probed and probed.group(2) in paths, f"the healthcheck probes {probed}"
    assert probed.group(1) == option(command, "--port")


def test_environment_variables_are_settings_or_dagster_and_reach_the_processes(monkeypatch):
    document = compose()
    services = document["services"]
    fields = {name.upper() for name in Settings.model_fields}
    image = read_dockerfile()
    dotenv = dotenv_from_example()

    def container_env(service: dict) -> dict[str, str]:
        env = dict(image.env)
        if ".env" in env_files(service):
            env |= dotenv
        return env | {k: str(v) for k, v in service.get("environment", {}).items()}

    project = {n: s for n, s in services.items() if "build" in s}
    for name, service in project.items():
        unknown = set(service.get("environment", {})) - fields - DAGSTER_VARIABLES
        assert unknown == set(), f"{name} sets variables nobody reads: {unknown}"
    assert set(services["postgres"]["environment"]) <= POSTGRES_IMAGE_VARIABLES
    assert all(key.startswith("MP_") for key in services["mailpit"]["environment"])

    # Every variable the production dagster.yaml reads reaches every Dagster process.
    dagster_yaml = (ROOT / "deploy" / "dagster.yaml").read_text()
    instance_variables = set(re.findall(r"env:\s*([A-Z_][A-Z0-9_]*)", dagster_yaml))
    assert instance_variables
    for name, service in project.items():
        assert instance_variables <= set(container_env(service)), name

    # Every variable of .env.example reaches the processes that run the project's code;
    # Dagster's own processes never see the secrets (they run no project code).
    runs_code = {"init", "user-code", "api"}
    for name in runs_code:
        env = container_env(services[name])
        missing = documented_variables(ENV_EXAMPLE) - set(env)
        assert missing == set(), f"{name} lacks {missing}"
    for name in set(project) - runs_code:
        assert "env_file" not in services[name]
        assert not {"GROQ_API_KEY", "SMTP_PASSWORD", "UNSUBSCRIBE_SECRET"} & set(
            container_env(services[name])
        )

    # What the code server reads, parsed by the settings themselves: the stores and the
    # mail catcher are compose services, on the ports they listen on.
    env = container_env(services["user-code"])
    for key in fields:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        if key in fields:
            monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    warehouse = sa.engine.make_url(settings.resolved_warehouse_url())
    ops = sa.engine.make_url(settings.resolved_ops_db_url())
    dagster_pg = sa.engine.make_url(env["DAGSTER_PG_URL"])
    assert (warehouse.drivername, ops.drivername) == ("postgresql+psycopg",) * 2
    assert dagster_pg.drivername == "postgresql"  # dagster-postgres picks its own driver
    (database_host,) = {warehouse.host, ops.host, dagster_pg.host}
    assert services[database_host]["image"].startswith("postgres:")
    assert {warehouse.port, ops.port, dagster_pg.port} == {5432}
    assert [u.database for u in (dagster_pg, warehouse, ops)] == ["dagster", "warehouse", "ops"]
    created = re.findall(r"CREATE DATABASE (\w+)", (ROOT / "deploy/postgres-init.sql").read_text())
    assert sorted(created) == sorted(u.database for u in (dagster_pg, warehouse, ops))
    assert warehouse.password == SECRETS["POSTGRES_PASSWORD"]
    assert services[settings.smtp_host]["image"].startswith("axllent/mailpit:")
    assert (settings.smtp_port, settings.smtp_starttls) == (1025, False)
    mounts = {m.split(":")[0]: m.split(":")[1] for m in services["user-code"]["volumes"]}
    assert mounts["data"] == str(settings.data_dir)
    assert settings.followup_days == (3, 7)  # .env.example's JSON list survives env_file


def test_store_urls_in_env_point_the_services_at_an_external_postgres():
    external = {
        "DAGSTER_PG_URL": "postgresql://dagster:pw@db.example.com:5432/dagster",
        "WAREHOUSE_URL": "postgresql+psycopg://wh:pw@db.example.com:5432/warehouse",
        "OPS_DB_URL": "postgresql+psycopg://ops:pw@db.example.com:5432/ops",
    }
    services = compose(dotenv_from_example(**external))["services"]
    for name in ("init", "user-code", "api"):
        env = services[name]["environment"]
        assert {k: env[k] for k in external} == external
    assert services["daemon"]["environment"]["DAGSTER_PG_URL"] == external["DAGSTER_PG_URL"]

    # Without the database password `docker compose up` stops with the reason.
    without = {k: v for k, v in dotenv_from_example().items() if k != "POSTGRES_PASSWORD"}
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        compose(without)


def test_every_variable_the_compose_file_interpolates_is_documented_in_env_example():
    undocumented = referenced_variables(compose_raw()) - documented_variables(ENV_EXAMPLE)
    assert undocumented == set(), f"add to .env.example: {sorted(undocumented)}"


def test_the_dockerfile_installs_the_project_the_way_ci_does():
    image = read_dockerfile()
    make = makefile_install_commands()
    docker = dockerfile_commands(image)
    make_installs, docker_installs = pip_installs(make), pip_installs(docker)
    assert make_installs and docker_installs == make_installs
    assert ["-e", ".[dev]"] in docker_installs  # the project itself, from pyproject.toml
    assert any(c[1:3] == ["-m", "venv"] for c in make)
    assert any(c[1:3] == ["-m", "venv"] for c in docker)
    # The pip that installs is the virtual environment's, as in the Makefile.
    venv = image.env["VIRTUAL_ENV"]
    for command in docker:
        if "pip" in command:
            assert command[0] == f"{venv}/bin/python"
    assert image.env["PATH"].startswith(f"{venv}/bin:")

    # What pip reads is in the image before the install step runs, nothing hand-listed.
    pyproject = (ROOT / "pyproject.toml").read_text()
    readme = re.search(r'^readme = "(.+)"', pyproject, re.MULTILINE).group(1)
    first = image.copies[0]
    assert {"pyproject.toml", readme} <= set(first.sources) and first.dest == image.workdir
    assert not any(re.search(r"pip install [a-z]", run) for run in image.runs)

    # The base image's Python is one the project supports.
    requires = re.search(r'^requires-python = "(.+)"', pyproject, re.MULTILINE).group(1)
    version = re.match(r"python:(\d+\.\d+)", image.base).group(1)
    assert f"{version}.0" in SpecifierSet(requires)

    # Editable, the SQL models stay where the code looks for them: beside the package.
    sql_models = ROOT / "reward_assets" / "storage" / "sql_models.py"
    looked_up = image.image_path(sql_models).parents[2] / "dbt_like_sql"
    assert image.repo_path(str(looked_up)) == ROOT / "dbt_like_sql"


def test_the_image_runs_as_a_user_who_owns_the_volumes():
    image = read_dockerfile()
    assert image.user and image.user not in {"root", "0"}
    services = compose()["services"]
    targets = {
        m.split(":")[1]
        for s in services.values()
        if "build" in s
        for m in s.get("volumes", [])
        if not m.startswith(".")
    }
    assert targets
    owner = f"chown -R {image.user}:{image.user} "
    owned = {
        PurePosixPath(word)
        for run in image.runs
        if owner in run
        for word in run.split(owner, 1)[1].split()
        if word.startswith("/")
    }
    for target in map(PurePosixPath, targets):
        # Docker gives a fresh named volume the owner of the image's folder at that path.
        assert target in owned or owned & set(target.parents), f"{target} is not {image.user}'s"


def test_the_build_context_leaves_out_secrets_and_local_state():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch(p, pattern) for p in prefixes for pattern in patterns)

    for secret_or_state in (".env", ".venv", "data", "dagster_home", ".git"):
        assert ignored(secret_or_state), secret_or_state
    for copy in read_dockerfile().copies:
        for source in copy.sources:
            assert not ignored(source), f"COPY {source} is excluded by .dockerignore"


def check_readme_deploy_section(readme: str) -> None:
    """The README's deploy section describes every service and exactly the published URLs."""
    assert README_SECTION in readme, f"README.md has no {README_SECTION!r} section"
    section = readme.split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    services = compose(dotenv_from_example())["services"]
    published = {int(port.split(":")[-2]) for s in services.values() for port in s.get("ports", [])}
    mentioned = {int(p) for p in re.findall(r"http://localhost:(\d+)", section)}
    assert published and mentioned == published
    for name in services:
        assert f"`{name}`" in section, f"the README does not describe the {name} service"
    assert "docker compose up" in section


def test_the_readme_names_every_service_and_the_published_urls():
    check_readme_deploy_section((ROOT / "README.md").read_text())


# --- The services' own commands, run as local processes ----------------------------------


@dataclass
class Stack:
    """The compose file's services mapped onto this machine."""

    cluster: ThrowawayPostgres
    smtp: SmtpServer
    home: Path
    volumes: dict[str, Path]  # container path of a named volume -> local folder
    ports: dict[str, dict[int, int]]  # service -> container port -> local port
    services: dict
    image: Image

    def local(self, value: str) -> str:
        for service, ports in self.ports.items():
            for container, port in ports.items():
                value = value.replace(f"@{service}:{container}/", f"@127.0.0.1:{port}/")
        home = PurePosixPath(self.image.env["DAGSTER_HOME"])
        if value.startswith("/") and (value == str(home) or home in PurePosixPath(value).parents):
            return str(self.home / PurePosixPath(value).relative_to(home))
        if value in self.volumes:
            return str(self.volumes[value])
        if value.startswith("/") and (found := self.image.repo_path(value)):
            return str(found)
        return value

    def env(self, name: str) -> dict[str, str]:
        service = self.services[name]
        env = dict(os.environ) | {"PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
        env.pop("VIRTUAL_ENV", None)
        if ".env" in env_files(service):
            env |= dotenv_from_example()
        declared = {k: str(v) for k, v in service.get("environment", {}).items()}
        env |= {k: self.local(v) for k, v in declared.items()}
        for key, value in declared.items():
            # A HOST naming a service becomes 127.0.0.1, its PORT that service's local port.
            if key.endswith("_HOST") and value in self.ports:
                env[key] = "127.0.0.1"
                port_key = key.removesuffix("_HOST") + "_PORT"
                env[port_key] = str(self.ports[value][int(declared[port_key])])
        return env

    def command(self, name: str) -> list[str]:
        return self._localised(name, command_of(self.services[name]))

    def healthcheck(self, name: str) -> bool:
        """The service's own health check (`CMD` form) passes against its local process."""
        test = self.services[name]["healthcheck"]["test"]
        assert test[0] == "CMD"
        checked = subprocess.run(
            self._localised(name, test[1:]),
            env=self.env(name),
            cwd=ROOT,
            capture_output=True,
            timeout=60,
        )
        return checked.returncode == 0

    def _localised(self, name: str, command: list[str]) -> list[str]:
        ports = self.ports.get(name, {})
        local = [self.local(arg) for arg in command]
        for i, arg in enumerate(command):
            if i and command[i - 1] in ("-p", "--port") and int(arg) in ports:
                local[i] = str(ports[int(arg)])
            for container, port in ports.items():
                local[i] = local[i].replace(f"127.0.0.1:{container}/", f"127.0.0.1:{port}/")
        return local

    def run(self, name: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(name),
            env=self.env(name),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @contextlib.contextmanager
    def start(self, name: str) -> Iterator[subprocess.Popen]:
        log = self.home.parent / f"{name}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                self.command(name),
                env=self.env(name),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)

    def log(self, name: str) -> str:
        return (self.home.parent / f"{name}.log").read_text()[-4000:]


def wait_for(check, what: str, timeout: float, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}")
        with contextlib.suppress(Exception):
            result = check()
            if result:
                return result
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout}s")


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def graphql(port: int, query: str) -> dict:
    body = json.dumps({"query": query}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


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
                    states = [
                        s
                        for s in instance.all_instigator_state()
                        if s.name == "new_customer_sensor"
                    ]
                    return states and instance.get_ticks(
                        states[0].instigator_origin_id, states[0].selector_id
                    )

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
