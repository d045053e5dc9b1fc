"""The notebooks run, top to bottom, in a real Jupyter kernel (nbclient), at the small size.

Each must finish without an error and show at least one real picture (a PNG of
more than a few colours).  Every notebook in ``notebooks/`` must be in
``NOTEBOOKS`` (so none goes unexecuted), and the committed notebooks carry no
outputs.
"""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from PIL import Image

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = [
    "01-quickstart",
    "02-cluster-and-dashboard",
    "03-recolor-gallery",
    "04-explore",
    "05-strong-scaling",
    "06-families",
    "07-deep-zoom",
    "08-gigapixel",
]
SMALL_WIDTH = 160  # the notebooks' small size: 160x120 pixels


def _outputs(nb) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def _pngs(nb) -> list[Image.Image]:
    images = []
    for out in _outputs(nb):
        data = out.get("data", {})
        if "image/png" in data:
            images.append(Image.open(io.BytesIO(base64.b64decode(data["image/png"]))))
    return images


def _text(nb) -> str:
    parts = []
    for out in _outputs(nb):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "text/plain" in out.get("data", {}):
            parts.append(out["data"]["text/plain"])
    return "".join(parts)


def _repo_stores() -> set[Path]:
    return {*ROOT.glob("*.zarr"), *NOTEBOOK_DIR.glob("*.zarr"), *NOTEBOOK_DIR.glob("*/*.zarr")}


def _colours(img: Image.Image) -> int:
    arr = np.asarray(img.convert("RGBA")).reshape(-1, 4)
    return len(np.unique(arr, axis=0))


@pytest.mark.cluster
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch):
    path = NOTEBOOK_DIR / f"{name}.ipynb"
    assert path.exists(), f"{path.relative_to(ROOT)} is missing"
    nb = nbformat.read(path, as_version=4)
    # the kernel is a child process: it inherits this environment
    monkeypatch.setenv("DFRACTAL_NOTEBOOK_SIZE", "small")
    monkeypatch.setenv("DFRACTAL_NOTEBOOK_DIR", str(tmp_path / "stores"))
    monkeypatch.delenv("DFRACTAL_SCHEDULER", raising=False)  # 02: its own LocalCluster
    monkeypatch.delenv("DASK_DISTRIBUTED__DASHBOARD__LINK", raising=False)  # links on 127.0.0.1, not a proxy
    run_dir = tmp_path / "cwd"
    run_dir.mkdir()
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(run_dir)}})
    stores_before = _repo_stores()
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    print(f"{name}: {time.perf_counter() - t0:.1f} s")

    errors = [out for out in _outputs(nb) if out.get("output_type") == "error"]
    assert not errors, [f"{e['ename']}: {e['evalue']}" for e in errors]
    images = _pngs(nb)
    assert images, f"{name} shows no image/png"
    assert max(_colours(img) for img in images) > 10, f"{name}: no image has more than 10 colours"
    assert _repo_stores() == stores_before, "a store was written into the repository"

    if name == "02-cluster-and-dashboard":
        lines = _text(nb).splitlines()
        assert any(line.startswith("METRICS TOTAL") for line in lines), "no METRICS TOTAL line"
        assert any(line.startswith("METRICS WORKER") for line in lines), "no METRICS WORKER line"
        assert any(line.startswith("http://127.0.0.1:") for line in lines), "no dashboard link on 127.0.0.1"
        assert any(line.startswith("http://127.0.0.1:") and line.endswith("/fractal") for line in lines)
    if name == "06-families":
        gallery = max(images, key=lambda img: img.width)
        assert gallery.width == 4 * SMALL_WIDTH, f"families {gallery.size}: expected 4 tiles of {SMALL_WIDTH}"
        assert "julia c=(-0.8+0.156j)" in _text(nb) and "multibrot d=3" in _text(nb)
    if name == "07-deep-zoom":
        text = _text(nb)
        assert "span 1e-60: deep=True  perturbation=True" in text and "all equal" in text
        assert "distinct float64 columns: 1 of 160" in text
        # past float64's exponent: the span kept as its decimal, samples checked against mpmath there too
        assert "span 1e-1000: extended=True" in text and "span attribute: 1E-1000" in text
        assert "distinct stored offsets: 160 of 160" in text and text.count("all equal") == 2
        assert "('frame', 'im', 're') (8, 60, 80) frames by perturbation: 6" in text and "zoom.gif (" in text
        strip = max(images, key=lambda img: img.width)
        assert strip.width == 5 * SMALL_WIDTH and all(
            _colours(strip.crop((k * SMALL_WIDTH, 0, (k + 1) * SMALL_WIDTH, strip.height))) > 30 for k in range(5)
        )
    if name == "08-gigapixel":
        text = _text(nb)
        assert "4 levels: shapes halve, down to one tile" in text and "pyramid/3" in text
        assert "xr.open_zarr(group='pyramid/2'): {'im': 205, 're': 275}" in text
        assert "level 1 equals the reduction" in text and "counts equal" in text
        # the widget given the store: levels read and recoloured with no task, then rendered past them
        assert "home: stored level 2, " in text and "zoomed x4: level 0, " in text
        assert "recoloured, read again: 0; tasks on the cluster: 0" in text and "zoomed x16: rendered on" in text
        pair = [img for img in images if img.size == (2 * 550, 410)]  # level 0 shrunk beside level 1
        assert len(pair) == 1 and _colours(pair[0]) > 30
        (strip,) = [img for img in images if img.size == (3 * 275, 205)]  # level 2 in three palettes
        assert all(_colours(strip.crop((k * 275, 0, (k + 1) * 275, 205))) > 30 for k in range(3))
    if name == "03-recolor-gallery":
        gallery = max(images, key=lambda img: img.width)
        assert gallery.width >= 7 * SMALL_WIDTH, f"gallery {gallery.size} cannot hold 7 tiles of {SMALL_WIDTH}"
        assert gallery.width > 3 * gallery.height


def test_every_notebook_is_executed():
    found = sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))
    assert found, "no notebooks"
    assert set(found) <= set(NOTEBOOKS), f"notebooks not in tests/test_notebooks.py: {set(found) - set(NOTEBOOKS)}"


@pytest.mark.parametrize("path", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.stem)
def test_committed_notebooks_have_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{path.name}: a cell has outputs (clear them before committing)"
            assert cell.get("execution_count") is None, f"{path.name}: a cell has an execution count"
