"""docker-compose.yml, read the way Compose reads it.

Against the Compose Specification's JSON schema (as written and after interpolation with the
.env a user makes from .env.example); its services, volumes and start order; every
environment variable against the settings, Dagster's and the images' own; the variables it
interpolates against .env.example; the published ports and services against the README's
deploy section. And the interpolation itself (`reward_assets_tests.compose`) against
Compose's rules.
"""

import hashlib
import json
import re

import jsonschema
import pytest
import sqlalchemy as sa

from reward_assets.email.unsubscribe import (
    DEFAULT_SECRET,
    UnsafeSecret,
    embedded_demo,
    signing_secret,
)
from reward_assets.settings import Settings
from reward_assets_tests.compose import (
    MissingVariable,
    interpolate,
    interpolated,
    read_dotenv,
    referenced_variables,
)
from reward_assets_tests.deploy_files import (
    DAGSTER_VARIABLES,
    ENV_EXAMPLE,
    POSTGRES_IMAGE_VARIABLES,
    README_SECTION,
    ROOT,
    SCHEMA_FILE,
    SCHEMA_NOTE,
    SECRETS,
    compose,
    compose_raw,
    documented_variables,
    dotenv_from_example,
    env_files,
    read_dockerfile,
)


def test_interpolation_follows_the_compose_rules():
    env = {"SET": "value", "EMPTY": ""}
    expanded = {
        "$SET ${SET} $SET-x ${SET}x": "value value value-x valuex",
        "[${UNSET}] [$UNSET] [${EMPTY}]": "[] [] []",
        "${UNSET:-d} ${EMPTY:-d} ${SET:-d}": "d d value",
        "${UNSET-d} ${EMPTY-d} ${SET-d}": "d  value",
        "${UNSET:+r} ${EMPTY:+r} ${SET:+r}": "  r",
        "${UNSET+r} ${EMPTY+r} ${SET+r}": " r r",
        "${EMPTY?e} ${SET?e} ${SET:?e}": " value value",
        "${UNSET:-${EMPTY:-${SET}}} ${UNSET:-$SET and ${SET}}": "value value and value",
        "${UNSET-a?b} ${UNSET:-/x:-y}": "a?b /x:-y",  # the first operator is the one
        "$$SET $${SET} ${UNSET:-$$}": "$SET ${SET} $",
        "a $ b $} $1 100$": "a $ b $} $1 100$",  # a `$` that starts no variable stays
    }
    for template, expected in expanded.items():
        assert interpolate(template, env) == expected, template

    required = {
        "${UNSET:?set it}": "UNSET is missing a value: set it",
        "${EMPTY:?set it}": "EMPTY is missing a value: set it",
        "${UNSET?must be ${SET}}": "UNSET is missing a value: must be value",
        "${UNSET?a-b}": "UNSET is missing a value: a-b",
    }
    for template, reason in required.items():
        with pytest.raises(MissingVariable) as raised:
            interpolate(template, env)
        assert str(raised.value) == f"required variable {reason}", template
    for invalid in ("${", "x ${SET", "${}", "${ SET}", "${SET }", "${SET!}", "${1A}", "${SET:x}"):
        with pytest.raises(ValueError) as raised:
            interpolate(invalid, env)
        assert not isinstance(raised.value, MissingVariable), invalid

    # Values are interpolated at any depth, keys never; other scalars stay as they are.
    document = {"$SET": {"list": ["${SET}", 1, True, None]}, "k": "$$"}
    assert interpolated(document, env) == {"$SET": {"list": ["value", 1, True, None]}, "k": "$"}
    assert referenced_variables({"$KEY": ["$A ${B:-${C}}", "$$D", 5]}) == {"A", "B", "C"}


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


def test_compose_refuses_to_start_until_the_secrets_are_set(monkeypatch):
    """.env.example copied as it is leaves the database password and the unsubscribe
    secret empty: compose stops with the reason instead of starting with a known value."""
    example = read_dotenv(ENV_EXAMPLE)
    assert example["POSTGRES_PASSWORD"] == "" and example["UNSUBSCRIBE_SECRET"] == ""
    for secret in ("POSTGRES_PASSWORD", "UNSUBSCRIBE_SECRET"):
        with pytest.raises(MissingVariable, match=secret):
            compose(example | {k: v for k, v in SECRETS.items() if k != secret})
    with pytest.raises(MissingVariable):
        compose(example)

    # The public default typed into .env passes compose's guard, but not the services:
    # with PostgreSQL stores and a mail server the product refuses it.
    services = compose(dotenv_from_example(UNSUBSCRIBE_SECRET=DEFAULT_SECRET))["services"]
    for key in Settings.model_fields:
        monkeypatch.delenv(key.upper(), raising=False)
    for key, value in services["api"]["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = Settings(_env_file=None)
    assert settings.unsubscribe_secret == DEFAULT_SECRET and not embedded_demo(settings)
    with pytest.raises(UnsafeSecret):
        signing_secret(settings)
    monkeypatch.setenv("UNSUBSCRIBE_SECRET", SECRETS["UNSUBSCRIBE_SECRET"])
    assert signing_secret(Settings(_env_file=None)) == SECRETS["UNSUBSCRIBE_SECRET"]


def test_every_variable_the_compose_file_interpolates_is_documented_in_env_example():
    undocumented = referenced_variables(compose_raw()) - documented_variables(ENV_EXAMPLE)
    assert undocumented == set(), f"add to .env.example: {sorted(undocumented)}"


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
