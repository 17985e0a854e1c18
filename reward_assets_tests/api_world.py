"""What the API tests serve: a seeded world materialised end to end (built once per
session), private copies of its stores, and the API on a real HTTP server."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from reward_assets.seed.generate import generate
from reward_assets.seed.model import SeedConfig

# Big enough for every model to pass its quality gate, small enough to build in ~45 s.
CUSTOMERS = 2000
_built: dict[str, ApiWorld] = {}


@dataclass(frozen=True)
class ApiWorld:
    data_dir: Path
    warehouse_url: str
    config: SeedConfig

    @property
    def snapshots(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def ops_db(self) -> Path:
        return self.data_dir / "ops.sqlite"

    @property
    def last_day(self) -> dt.date:
        return self.config.start_date + dt.timedelta(days=self.config.days - 1)


def materialize(world: ApiWorld, selection, start: dt.date, end: dt.date) -> None:
    """One in-process run of the real code location on the world's stores."""
    import dagster as dg

    from reward_assets.definitions import defs
    from reward_assets.pipeline import materialize_all

    with pytest.MonkeyPatch.context() as patch:
        for variable in ("AS_OF", "HOLDOUT_SHARE", "PARTITIONS_START_DATE", "OPS_DB_URL"):
            patch.delenv(variable, raising=False)
        patch.setenv("DATA_DIR", str(world.data_dir))
        patch.setenv("WAREHOUSE_URL", world.warehouse_url)
        with dg.DagsterInstance.ephemeral() as instance:
            summary = materialize_all(defs(), instance, start, end, selection)
    assert summary.success, summary


def shared_world(tmp_path_factory: pytest.TempPathFactory) -> ApiWorld:
    """The seeded world every API test module reads, built on first use."""
    import dagster as dg

    if "default" not in _built:
        root = tmp_path_factory.mktemp("api-world")
        config = SeedConfig(output=root / "data", customers=CUSTOMERS)
        generate(config)
        world = ApiWorld(config.output, f"duckdb:///{root / 'warehouse.duckdb'}", config)
        materialize(world, dg.AssetSelection.all(), config.start_date, world.last_day)
        _built["default"] = world
    return _built["default"]


def copy_world(world: ApiWorld, root: Path) -> ApiWorld:
    """The world's landing data, snapshots, models, ops store and warehouse, under root."""
    shutil.copytree(world.data_dir, root / "data")
    shutil.copy(world.warehouse_url.removeprefix("duckdb:///"), root / "warehouse.duckdb")
    return ApiWorld(root / "data", f"duckdb:///{root / 'warehouse.duckdb'}", world.config)


def copy_ops_store(world: ApiWorld, target: Path) -> str:
    """A private copy of the world's operational store (its model registry included)."""
    source = sqlite3.connect(world.ops_db)
    copy = sqlite3.connect(target)
    with copy:
        source.backup(copy)
    source.close()
    copy.close()
    return f"sqlite:///{target}"


def private_env(world: ApiWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings of an app over a private copy of the world's snapshots and ops store; on
    DuckDB the warehouse URL is never opened (the API reads the snapshots only)."""
    data_dir = tmp_path / "api-data"
    shutil.copytree(world.snapshots, data_dir / "snapshots")
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.setenv("WAREHOUSE_URL", world.warehouse_url)
    monkeypatch.setenv("OPS_DB_URL", copy_ops_store(world, tmp_path / "ops.sqlite"))
    monkeypatch.setenv("MODELS_DIR", str(world.data_dir / "models"))
    for name in ("API_KEY", "AS_OF", "KILL_SWITCH", "GROQ_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return data_dir


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serve(env: dict[str, str], timeout: float = 60) -> Iterator[str]:
    """`uvicorn reward_assets.api.main:app` in a child process on a free loopback port, with
    `env` over this process's environment; yields the base URL once /health answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "reward_assets.api.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if server.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"the API server exited: {log.read()}")
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the API server did not answer within {timeout} s")
                time.sleep(0.2)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
