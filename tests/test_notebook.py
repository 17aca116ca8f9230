"""experiments/colab_tpu.ipynb runs top to bottom on a CPU with a small domain (nbclient, a fresh kernel)."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "experiments" / "colab_tpu.ipynb"


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    out = tmp_path / "sweep"
    monkeypatch.setenv("JAXSCD_NOTEBOOK_MAX_LEN", "4")
    monkeypatch.setenv("JAXSCD_NOTEBOOK_SWEEP", "3,4")
    monkeypatch.setenv("JAXSCD_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "\n".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for o in cell.get("outputs", []))
    assert "backend: CPU" in text
    assert "PROVED" in text and "def program(tokens)" in text
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3
    assert len((out / "results.jsonl").read_text().splitlines()) == 4
