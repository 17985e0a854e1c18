"""The deployment's files read the way their tools read them, for the test_deploy_* modules.

docker-compose.yml interpolated by Compose's rules (`reward_assets_tests.compose`) with the
.env a user makes from .env.example; the Dockerfile's FROM, ENV, WORKDIR, USER, RUN and COPY;
the recipe of the Makefile's install rule.
"""

import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from reward_assets_tests.compose import NAME, interpolated, read_dotenv

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = ROOT / "deploy" / "compose-spec.json"
SCHEMA_NOTE = ROOT / "deploy" / "compose-spec.md"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
VENV_BIN = Path(sys.executable).parent
README_SECTION = "## Deploy with docker compose"
# Variables of Dagster itself and of the postgres image, besides the project's settings.
DAGSTER_VARIABLES = {
    "DAGSTER_HOME",
    "DAGSTER_PG_URL",
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS",
}
POSTGRES_IMAGE_VARIABLES = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "PGDATA"}
# What a developer's .env holds besides .env.example's variables, for the interpolation:
# the secrets .env.example leaves empty, which compose requires.
SECRETS = {
    "POSTGRES_PASSWORD": "compose-test-password",
    "UNSUBSCRIBE_SECRET": "compose-test-unsubscribe-secret-3f9a1c7e",
}


# --- Reading the compose file the way Compose does -----------------------------------------


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
    return re.sub(rf"\$\{{?({NAME})\}}?", lambda m: env.get(m.group(1), m.group(0)), text)


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
