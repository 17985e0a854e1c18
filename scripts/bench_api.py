"""API benchmark: recommended_rewards under a fixed request rate over real HTTP.

    python scripts/bench_api.py [--customers 100000] [--rate 200] [--duration 30]

Serves the snapshots of a materialised data set of --customers customers (the one
`scripts/benchmark.py` leaves in data/bench/run-N/, built the same way when missing) with
uvicorn on loopback, and drives GET /api/customers/{id}/recommended_rewards?limit=3 over
random known customers with Locust (headless, in a child process: gevent patches the
standard library). --users simulated users send on a fixed, interleaved schedule (one
request every 1/rate s overall; Locust's own constant_throughput lets users drift into
bursts once a few answers come back together), so the load is open-loop unless a response
takes longer than users/rate seconds. Latency percentiles come from every request of the measured
window (after --warmup seconds); the result goes to data/bench/api.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("marts.dim_customers", "marts.dim_rewards", "ml.recommendation_sets")
TARGET_P99_MS = 20.0
PATH = "/api/customers/{}/recommended_rewards?limit=3"


def published(data_dir: Path) -> bool:
    return all((data_dir / "snapshots" / f"{table}.parquet").exists() for table in NEEDED)


def build(customers: int, seed: int, out: Path) -> None:
    """The data scripts/benchmark.py leaves in out/run-N, made by running it (its own seed,
    reward count and timing figures come along)."""
    print(f"No snapshots for {customers:,} customers under {out}: running scripts/benchmark.py")
    command = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--customers"]
    command += [str(customers), "--seed", str(seed), "--out", str(out)]
    subprocess.run(command, check=True)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(workdir: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATA_DIR": str(workdir / "data"),
        # Never opened: on DuckDB the API reads the snapshots.
        "WAREHOUSE_URL": f"duckdb:///{workdir / 'warehouse.duckdb'}",
    }
    env.pop("API_KEY", None)
    env.pop("OPS_DB_URL", None)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "reward_assets.api.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
    )


def wait_for(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the API server exited before answering")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the API server did not answer within {timeout} s")


def drive(args: argparse.Namespace) -> int:
    """The load generator (child process): Locust as a library, every latency recorded."""
    import gevent
    from locust import FastHttpUser, task
    from locust.env import Environment

    ids = json.loads(Path(args.ids_file).read_text())
    chooser = random.Random(args.seed)
    period = args.users / args.rate
    first = time.monotonic() + 2
    slots = iter(range(args.users))

    class Member(FastHttpUser):
        """Sends at fixed instants: user i at first + i/rate + k*period, k = 0, 1, ... So
        the users interleave evenly (one request every 1/rate s overall), and a slow answer
        delays only its own user's next request, not the schedule of the others."""

        host = args.url

        def on_start(self):
            self.next_at = first + next(slots) / args.rate
            gevent.sleep(max(0.0, self.next_at - time.monotonic()))

        def wait_time(self):
            self.next_at += period
            return max(0.0, self.next_at - time.monotonic())

        @task
        def recommended_rewards(self):
            self.client.get(PATH.format(chooser.choice(ids)), name="recommended_rewards")

    environment = Environment(user_classes=[Member])
    samples: list[tuple[float, float, bool]] = []

    def on_request(response_time, exception, response=None, **_kwargs):
        ok = exception is None and response is not None and response.status_code == 200
        samples.append((time.monotonic(), response_time, ok))

    environment.events.request.add_listener(on_request)
    runner = environment.create_local_runner()
    # Every user exists before the first slot; each then waits for its own.
    runner.start(args.users, spawn_rate=args.users)
    gevent.sleep(2 + args.warmup)
    start = time.monotonic()
    gevent.sleep(args.duration)
    end = time.monotonic()
    runner.quit()
    window = [s for s in samples if start <= s[0] < end]
    Path(args.result).write_text(
        json.dumps(
            {
                "seconds": end - start,
                "latencies_ms": [s[1] for s in window],
                "errors": sum(1 for s in window if not s[2]),
                "all_requests": len(samples),
            }
        )
    )
    return 0


def measure(args: argparse.Namespace) -> int:
    import numpy as np
    import psutil
    import pyarrow.parquet as pq

    workdir = args.out / f"run-{args.customers}"
    if not published(workdir / "data"):
        build(args.customers, args.seed, args.out)
    ids = pq.read_table(
        workdir / "data" / "snapshots" / "marts.dim_customers.parquet", columns=["customer_id"]
    )["customer_id"].to_pylist()
    args.out.mkdir(parents=True, exist_ok=True)
    ids_file = args.out / ".api-bench-ids.json"
    ids_file.write_text(json.dumps(ids))
    result_file = args.out / ".api-bench-result.json"

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(workdir, port)
    try:
        wait_for(url, server)
        process = psutil.Process(server.pid)
        cpu_before = process.cpu_times()
        print(
            f"Driving {url}{PATH.format('{id}')} at {args.rate} req/s for {args.duration} s "
            f"({args.users} Locust users, {len(ids):,} customers) ..."
        )
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--drive",
                "--url",
                url,
                "--ids-file",
                str(ids_file),
                "--result",
                str(result_file),
                "--rate",
                str(args.rate),
                "--users",
                str(args.users),
                "--duration",
                str(args.duration),
                "--warmup",
                str(args.warmup),
                "--seed",
                str(args.seed),
            ],
            check=True,
        )
        cpu_after = process.cpu_times()
        server_rss_mb = process.memory_info().rss / 2**20
    finally:
        server.terminate()
        server.wait(timeout=30)
    measured = json.loads(result_file.read_text())
    ids_file.unlink()
    result_file.unlink()

    latencies = np.array(measured["latencies_ms"])
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    server_cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    report = {
        "endpoint": "GET /api/customers/{customer_id}/recommended_rewards?limit=3",
        "customers": len(ids),
        "target_rate_per_s": args.rate,
        "achieved_rate_per_s": round(len(latencies) / measured["seconds"], 1),
        "duration_s": round(measured["seconds"], 1),
        "requests": int(len(latencies)),
        "errors": measured["errors"],
        "latency_ms": {
            "p50": round(float(p50), 2),
            "p95": round(float(p95), 2),
            "p99": round(float(p99), 2),
            "max": round(float(latencies.max()), 2),
        },
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": bool(p99 < TARGET_P99_MS and measured["errors"] == 0),
        "load_generator": f"locust, {args.users} users on an interleaved fixed schedule",
        "server": {
            # Warm-up included: the CPU counter spans the whole drive.
            "cpu_ms_per_request": round(1000 * server_cpu / measured["all_requests"], 2),
            "rss_mb": round(server_rss_mb, 1),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    (args.out / "api.json").write_text(json.dumps(report, indent=2) + "\n")
    latency = report["latency_ms"]
    print(
        f"{report['requests']:,} requests at {report['achieved_rate_per_s']} req/s, "
        f"{report['errors']} errors; p50 {latency['p50']} ms, p95 {latency['p95']} ms, "
        f"p99 {latency['p99']} ms (target < {TARGET_P99_MS:g} ms: "
        f"{'met' if report['meets_target'] else 'MISSED'}); written to {args.out / 'api.json'}"
    )
    # A missed target is a finding, not a failure of the bench; errors are.
    return 1 if report["errors"] else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=200, help="requests per second")
    parser.add_argument("--duration", type=float, default=30, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5, help="seconds before measuring")
    parser.add_argument("--users", type=int, default=50, help="Locust users sharing the rate")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "data" / "bench", help="results; data in out/run-N"
    )
    # The child process's own arguments.
    parser.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return drive(args) if args.drive else measure(args)


if __name__ == "__main__":
    sys.exit(main())
