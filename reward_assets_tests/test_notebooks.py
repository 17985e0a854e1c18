"""The notebooks run green on a materialised world, and are committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from reward_assets_tests.api_world import shared_world

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shared_world(tmp_path_factory)


def test_there_are_notebooks_and_none_carries_outputs():
    assert [p.name for p in NOTEBOOKS] == ["models.ipynb", "warehouse_and_analytics.ipynb"]
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert code, path.name
        assert [c for c in code if c.outputs or c.execution_count is not None] == [], path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_outputs_of_a_run(path, world, tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(world.data_dir))
    monkeypatch.setenv("WAREHOUSE_URL", world.warehouse_url)
    for name in ("OPS_DB_URL", "MODELS_DIR", "AS_OF"):
        monkeypatch.delenv(name, raising=False)
    notebook = nbformat.read(path, as_version=4)
    # In a folder of its own, so no .env of the checkout leaks into the kernel.
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    # Every chart drew and every table printed.
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
    assert sum(o.output_type == "execute_result" for o in outputs) >= 3
