"""The compose file's services as local processes, for test_deploy_live.py.

Service names become 127.0.0.1 and their container ports free local ports, container paths
become local folders (DAGSTER_HOME, the named volumes, what the Dockerfile copies), and each
service runs its own command and health check from the compose file, with the environment
the compose file gives it.
"""

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from reward_assets_tests.deploy_files import (
    ROOT,
    VENV_BIN,
    Image,
    command_of,
    dotenv_from_example,
    env_files,
)
from reward_assets_tests.smtp_server import SmtpServer
from reward_assets_tests.test_production_instance import ThrowawayPostgres


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
