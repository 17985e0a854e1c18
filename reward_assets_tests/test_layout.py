"""The layout holds: no import cycles between modules or between domain packages, Dagster
only in the wiring, the seed generator off the product path, modules a reader can take in,
and every asset one hop from its code."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import reward_assets

PACKAGE = Path(reward_assets.__file__).parent
ROOT = PACKAGE.parent
# The modules that wire or run Dagster; every other module of the package is plain logic.
DAGSTER_SIDE = ("reward_assets.defs", "reward_assets.definitions", "reward_assets.pipeline")
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def _resolve(name: str) -> str | None:
    """The project module an import names (a symbol's module for `from m import symbol`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(project modules, other top-level packages) that a module imports anywhere in it,
    function-level imports included: a lazy import closes a circle just the same."""
    project, external = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith("reward_assets."):
                project.add(_resolve(name))
            else:
                external.add(name.partition(".")[0])
    return project - {None, module_name(path)}, external


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def domain(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_module_imports_itself_in_a_circle():
    graph = {name: project for name, (project, _) in GRAPH.items()}
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")


def test_domain_packages_import_each_other_one_way_only():
    graph: dict[str, set[str]] = {}
    for name, (project, _) in GRAPH.items():
        graph.setdefault(domain(name), set()).update(
            domain(target) for target in project if domain(target) != domain(name)
        )
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        pytest.fail(f"packages import each other: {' -> '.join(error.args[1])}")


def test_plain_modules_never_import_dagster():
    offenders = sorted(
        name
        for name, (_, external) in GRAPH.items()
        if not name.startswith(DAGSTER_SIDE)
        and any(e == "dagster" or e.startswith("dagster_") for e in external)
    )
    assert offenders == []
    # The wiring does import it, so the check above has something to tell apart.
    assert "dagster" in GRAPH["reward_assets.definitions"][1]


def test_the_product_never_imports_the_seed_generator():
    offenders = sorted(
        name
        for name, (project, _) in GRAPH.items()
        if not name.startswith("reward_assets.seed")
        and any(target.startswith("reward_assets.seed") for target in project)
    )
    assert offenders == []


def test_no_module_is_longer_than_a_reader_can_take_in():
    lengths = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert len(lengths) > 50
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def test_every_asset_references_the_file_that_defines_it():
    from reward_assets.definitions import defs

    specs = list(defs().resolve_all_asset_specs())
    assert len(specs) >= 40
    for spec in specs:
        key = spec.key.to_user_string()
        references = spec.metadata["dagster/code_references"].code_references
        files = [Path(reference.file_path) for reference in references]
        assert all(file.exists() for file in files), key
        sql = ROOT / "dbt_like_sql" / f"{key}.sql"
        if sql.exists():
            # A SQL model opens on its SQL first.
            assert files[0] == sql.resolve(), key
            continue
        # A Python asset: the wiring module that defines the function or builds the asset.
        (python,) = files
        assert python.is_relative_to(PACKAGE / "defs"), key
        text = python.read_text()
        assert f"def {key}(" in text or f"{key} = " in text, (key, python)


def test_every_command_runs_a_function_that_exists(capsys):
    import importlib

    from reward_assets.cli import COMMANDS, main

    assert len(COMMANDS) == 6
    for module, function, _ in COMMANDS.values():
        assert callable(getattr(importlib.import_module(module), function))
    assert main(["--help"]) == 0
    usage = capsys.readouterr().out
    assert [name for name in COMMANDS if name not in usage] == []
    assert main(["nonsense"]) == 2
