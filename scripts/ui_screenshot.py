"""What the Dagster UI shows of `dim_customers` (its column schema) and `analytics_report`
(its charts), checked on a running webserver: asked of its GraphQL API over HTTP, and
captured as screenshots of the two asset pages by headless Chromium.

Starts `dagster-webserver` on the `make run` storage (DAGSTER_HOME, default
./dagster_home; the code location loads with the same DATA_DIR and WAREHOUSE_URL as the
run), prints the column schema and the charts, writes
<out>/dim_customers.png and <out>/analytics_report.png, and stops the webserver. Exits 1
when either asset lacks what the UI should show.

    make run
    DAGSTER_HOME=$PWD/dagster_home .venv/bin/python scripts/ui_screenshot.py --out data/ui

Chromium: `apt-get install chromium` (Debian) or --browser PATH; --no-browser checks over
GraphQL only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_ASSET, CHARTS_ASSET = "dim_customers", "analytics_report"
CHART_PREFIX = "chart: "
QUERY = """
query LatestMetadata($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset {
      definition { kinds }
      assetMaterializations(limit: 1) {
        runId
        metadataEntries {
          __typename
          label
          ... on TableSchemaMetadataEntry { schema { columns { name type } } }
          ... on MarkdownMetadataEntry { mdStr }
          ... on TextMetadataEntry { text }
        }
      }
    }
  }
}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def webserver(dagster_home: Path, port: int, timeout: float = 180.0) -> Iterator[str]:
    """`dagster-webserver` on the code location and `dagster_home`; yields its base URL
    once it answers, and stops it (and its code server) afterwards."""
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "dagster_webserver", "-m", "reward_assets.definitions"]
    command += ["-h", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # one process group: the code server stops with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited: {process.stderr.read().decode()}")
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"dagster-webserver did not answer within {timeout:.0f}s")
            time.sleep(0.5)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def latest_metadata(url: str, asset: str) -> dict:
    """The asset's kinds and its latest materialisation's metadata entries by label, as
    the UI's GraphQL API gives them."""
    answer = httpx.post(
        f"{url}/graphql",
        json={"query": QUERY, "variables": {"key": {"path": [asset]}}},
        timeout=60,
    )
    answer.raise_for_status()
    body = answer.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors for {asset}: {body['errors']}")
    node = body["data"]["assetOrError"]
    if node["__typename"] != "Asset" or not node["assetMaterializations"]:
        raise LookupError(f"{asset} has no materialisation on this instance")
    [latest] = node["assetMaterializations"]
    return {
        "kinds": node["definition"]["kinds"] if node["definition"] else [],
        "entries": {entry["label"]: entry for entry in latest["metadataEntries"]},
    }


def column_schema(metadata: dict) -> list[tuple[str, str]]:
    entry = metadata["entries"].get("dagster/column_schema")
    if not entry:
        return []
    return [(c["name"], c["type"]) for c in entry["schema"]["columns"]]


def charts(metadata: dict) -> dict[str, str]:
    return {
        label.removeprefix(CHART_PREFIX): entry["mdStr"]
        for label, entry in metadata["entries"].items()
        if label.startswith(CHART_PREFIX) and entry["__typename"] == "MarkdownMetadataEntry"
    }


def dismiss_welcome(url: str) -> None:
    """Mark the UI's first-visit "Join the Dagster community" dialog as seen on this
    instance (what its Skip button does), so it does not cover the screenshots."""
    answer = httpx.post(f"{url}/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=30)
    answer.raise_for_status()


def screenshot(browser: str, url: str, path: Path) -> None:
    """The page as headless Chromium renders it, after its scripts have run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1440,2600",
            # Virtual time lets the single-page app fetch and render before the capture.
            "--virtual-time-budget=25000",
            f"--screenshot={path}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dagster-home", type=Path, default=Path(os.environ.get("DAGSTER_HOME", "dagster_home"))
    )
    parser.add_argument("--out", type=Path, default=Path("data/ui"))
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--browser", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--no-browser", action="store_true", help="GraphQL checks only")
    args = parser.parse_args(argv)

    with webserver(args.dagster_home.resolve(), args.port or free_port()) as url:
        schema = column_schema(latest_metadata(url, SCHEMA_ASSET))
        pictures = charts(latest_metadata(url, CHARTS_ASSET))
        print(f"{SCHEMA_ASSET}: {len(schema)} columns")
        for name, kind in schema:
            print(f"  {name:<24} {kind}")
        for title, text in pictures.items():
            print(f"\n{CHARTS_ASSET} — {title}\n{text}")
        if not args.no_browser:
            dismiss_welcome(url)
            for asset in (SCHEMA_ASSET, CHARTS_ASSET):
                path = args.out / f"{asset}.png"
                screenshot(args.browser, f"{url}/assets/{asset}", path)
                print(f"screenshot: {path}")
    if not schema or not pictures:
        print("the UI lacks the column schema or the charts", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
