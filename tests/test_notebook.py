"""The style blending notebook runs top to bottom headless, and is committed without outputs."""

import ast
import json
import os
import pathlib

import pytest

from conftest import REPO, SHARED_DATA

NOTEBOOK = REPO / "notebooks" / "style_blending.ipynb"


def test_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    dirty = [i for i, c in enumerate(nb["cells"])
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"cells {dirty} of {NOTEBOOK.name} carry outputs: strip them before committing"


# Every address the notebook opens, and why it is trusted. A guessed repository URL (an "Open in
# Colab" badge or a pip install from GitHub) once pointed at nothing.
CHECKED_ADDRESSES = {
    # Pinned with its sha256 in TensorFlow's WORKSPACE (http_archive "stylize"); the notebook
    # checks that sha256 after the download.
    "https://storage.googleapis.com/download.tensorflow.org/models/stylize_v1.zip",
}


def test_links_only_checked_addresses():
    import re

    cells = json.loads(NOTEBOOK.read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells)
    assert set(re.findall(r"https?://[^\s\"')\]]+", text)) <= CHECKED_ADDRESSES


@pytest.mark.slow
def test_runs_headless(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("NOTEBOOK_PREVIEW_SIZE", "48")
    monkeypatch.setenv("NOTEBOOK_FULL_SIZE", "64")
    monkeypatch.setenv("NOTEBOOK_FIGURE_SIZE", "128")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if not SHARED_DATA.exists():
        # Without the project's VGG file the notebook would ask Keras to download ImageNet weights.
        pytest.skip(f"needs {SHARED_DATA} for the VGG weights of the style-loss plot")
    monkeypatch.setenv("IMAGE_STYLIZATION_SHARED_DATA", str(SHARED_DATA))
    # The kernel imports the package from this checkout, installed or not.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "26 styles:" in text
    assert '--which_styles="{' in text
    # The arbitrary-style section: embeddings, a two-painting blend and the strips ran.
    assert "arbitrary-style embeddings: (100,)" in text
    assert '--style_images="{' in text and "strip from photo to painting:" in text
    # The style-loss curves (alpha = weight of style A): each painting is closer in style to its
    # own pure pastiche than to the other style's.
    line = [l for l in text.splitlines() if l.startswith("{") and "[" in l][-1]
    to_a, to_b = ast.literal_eval(line).values()
    assert to_a[-1] < to_a[0] and to_b[0] < to_b[-1]
