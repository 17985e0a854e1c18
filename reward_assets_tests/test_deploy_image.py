"""The image the compose file's project services run, read from the Dockerfile.

Every command's executable, module and file against the project and what the Dockerfile
copies; the workspace against the code server's name and port; the API's command against the
app the package defines; the Dockerfile's install step against CI's (`make install`, less
the dev tools, every runtime package pinned at CI's version); the
image's user against the volumes it writes; the build context against .dockerignore.
"""

import functools
import importlib
import importlib.metadata
import re
import tomllib
from fnmatch import fnmatch
from pathlib import PurePosixPath

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from reward_assets.warehouse.sql_models import SQL_DIR
from reward_assets_tests.deploy_files import (
    ROOT,
    VENV_BIN,
    command_of,
    compose,
    dockerfile_commands,
    makefile_install_commands,
    option,
    pip_installs,
    read_dockerfile,
    sub_commands,
)


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
            # The image installs the same pyproject.toml into its venv as CI into .venv,
            # less the dev tools: a command's program comes with a runtime package.
            assert executable == "sh" or (VENV_BIN / executable).exists(), (
                f"{name}: {executable} is not installed by the project"
            )
            assert executable in {"sh", "python", *runtime_scripts()}, (
                f"{name}: {executable} comes with a dev tool the image does not install"
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


def without_dev_extra(install: list[str]) -> list[str]:
    return [arg.replace("[dev,", "[") for arg in install]


@functools.cache
def runtime_packages() -> dict[str, str]:
    """Every distribution the project needs at run time (its dependencies and the celery
    extra, transitively, markers evaluated) with the version installed here, where CI's
    install ran."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pending = [
        (Requirement(r), "")
        for r in project["dependencies"] + project["optional-dependencies"]["celery"]
    ]
    found, seen = {}, set()
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        key = (canonicalize_name(requirement.name), tuple(sorted(requirement.extras)))
        if key in seen:
            continue
        seen.add(key)
        distribution = importlib.metadata.distribution(requirement.name)
        found[key[0]] = distribution.version
        for needed in distribution.requires or []:
            for asked in sorted(requirement.extras) or [""]:
                pending.append((Requirement(needed), asked))
    return found


def runtime_scripts() -> set[str]:
    """The console commands the runtime packages and the project install."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["scripts"]) | {
        entry.name
        for name in runtime_packages()
        for entry in importlib.metadata.distribution(name).entry_points
        if entry.group == "console_scripts"
    }


def test_the_dockerfile_installs_the_project_the_way_ci_does_without_the_dev_tools():
    image = read_dockerfile()
    make = makefile_install_commands()
    docker = dockerfile_commands(image)
    make_installs, docker_installs = pip_installs(make), pip_installs(docker)
    # CI's install, pip and all, with the dev extra (test and benchmark tools) left out.
    assert make_installs and docker_installs == [without_dev_extra(i) for i in make_installs]
    assert ["-c", "constraints.txt", "-e", ".[dev,celery]"] in make_installs
    assert ["-c", "constraints.txt", "-e", ".[celery]"] in docker_installs

    # Both resolve against constraints.txt, which pins every package the image installs
    # at the version CI installed: what the two share is the same. pip and setuptools come
    # with the virtual environment itself.
    pins = {
        canonicalize_name(name): version
        for name, version in re.findall(
            r"^([A-Za-z0-9_.\-]+)==(\S+)", (ROOT / "constraints.txt").read_text(), re.MULTILINE
        )
    }
    runtime = runtime_packages()
    assert {"dagster", "fastapi", "alembic", "dagster-celery"} <= set(runtime)
    unpinned = {
        name: (version, pins.get(name))
        for name, version in runtime.items()
        if pins.get(name) != version and name not in {"pip", "setuptools"}
    }
    assert unpinned == {}
    # And the image holds none of the dev tools.
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    tools = {canonicalize_name(Requirement(r).name) for r in dev["dev"]}
    assert {"pytest", "locust", "schemathesis", "ruff"} <= tools
    assert tools & set(runtime) <= {"httpx"}  # the Groq client's HTTP library
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
    assert {"pyproject.toml", readme, "constraints.txt"} <= set(first.sources)
    assert first.dest == image.workdir
    assert not any(re.search(r"pip install [a-z]", run) for run in image.runs)

    # The base image's Python is one the project supports.
    requires = re.search(r'^requires-python = "(.+)"', pyproject, re.MULTILINE).group(1)
    version = re.match(r"python:(\d+\.\d+)", image.base).group(1)
    assert f"{version}.0" in SpecifierSet(requires)

    # The package finds its SQL models through its own `sql` link to dbt_like_sql/, which
    # the image copies beside it.
    assert SQL_DIR == ROOT / "reward_assets" / "sql" and SQL_DIR.is_symlink()
    assert SQL_DIR.resolve() == ROOT / "dbt_like_sql"
    copied = {source for copy in image.copies for source in copy.sources}
    assert {"reward_assets", "dbt_like_sql"} <= copied


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
