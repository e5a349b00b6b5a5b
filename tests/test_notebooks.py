"""Every notebook in examples/ runs top to bottom in a fresh kernel, offline; a broken
notebook fails the suite (it is never skipped)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
# Committed outputs stay small: thumbnails at most, no large base64 images.
MAX_OUTPUT_BYTES = 200_000


def test_there_are_notebooks():
    assert NOTEBOOKS, "examples/ holds no notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_offline(path, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # One intra-op thread in the kernel, as in the other tests (conftest): the tiny models gain
    # nothing from more, and on a busy 2-core machine a second OpenMP thread slows them many times.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=dict(os.environ))
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    # What a user saves after running it stays small too: images are shown as thumbnails.
    assert len(nbformat.writes(notebook).encode()) < MAX_OUTPUT_BYTES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_uses_public_api_and_small_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert "._" not in code.replace("__", ""), "notebooks use public APIs only"
    assert 'from_pretrained("zhanglx/TWN-4B"' in "\n".join(c.source for c in notebook.cells)
    assert len(path.read_bytes()) < MAX_OUTPUT_BYTES
