"""The README's two set-up commands stay at the top, and CI runs the test one;
every code block of the README is run as written or listed with the tests
that exercise it."""

import contextlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    text = (ROOT / "README.md").read_text()
    head = text[: text.index("## The seed's commands")]
    return re.findall(r"```bash\n(.+?)\n```", head)


def test_two_setup_commands_at_the_top():
    install_render, install_test = _commands()
    assert install_render.startswith("pip install -e .") and "dfractal render" in install_render
    assert install_test.startswith("pip install -e ") and "pytest" in install_test


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert any(line.startswith(_commands()[1]) for line in ci.splitlines())


def test_every_dfractal_command_in_the_readme_parses():
    """A command a reader copies from the README is one the CLI accepts."""
    import shlex

    from dfractal_dask.cli.app import build_parser, join_negative_values

    text = (ROOT / "README.md").read_text()
    lines = [line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.+?)\n```", text, re.S)
             for line in block.splitlines()]  # fmt: skip
    commands = [shlex.split(line.split("&&")[-1].split("||")[0]) for line in lines if "dfractal " in line]
    commands = [c[c.index("dfractal") + 1 :] for c in commands if "dfractal" in c]
    assert len(commands) > 10 and any("--fractal" in c for c in commands)
    parser = build_parser()
    for argv in commands:
        parser.parse_args(join_negative_values(argv))  # exits (fails the test) on a bad one


@pytest.mark.slow
@pytest.mark.cluster
def test_the_object_storage_example_runs_as_written(tmp_path):
    """The README's S3 block, run by bash in an empty folder (its port swapped
    for a free one): a moto server, a render into it, info, recolor."""
    import os
    import signal
    import socket
    import subprocess

    text = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.+?)\n```", text, re.S) if "moto_server" in b)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lines = [line for line in block.replace(":9000", f":{port}").replace("-p 9000", f"-p {port}").splitlines()
             if not line.startswith("pip install")]  # installed already (the test extra)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    p = subprocess.Popen(["bash", "-e", "-c", "\n".join(lines)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        out, _ = p.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # the server too, whatever happened
    assert p.returncode == 0, out
    assert "verified: 8 blocks, 2 coordinates, 6 arrays' metadata" in out and "every one matches its record" in out
    assert (tmp_path / "m.png").stat().st_size > 0 and (tmp_path / "m-viridis.png").stat().st_size > 0
    assert not (tmp_path / "s3:").exists()


# -- every code block of the README is tested as written -------------------------
def _blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block of the README, in order."""
    return re.findall(r"```(\w*)\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


PYTHON_BLOCKS = [text for lang, text in _blocks() if lang == "python"]

#: The README's blocks that are not run here, by the start of their first line,
#: and the tests that run what they show (or, for output, what prints it).
EXERCISED = {
    "pip install -e . && dfractal render --overwrite": ("tests/test_readme.py::test_two_setup_commands_at_the_top",
                                                        "tests/test_seed_commands.py::test_seed_render"),
    'pip install -e ".[test]" && python -m pytest': ("tests/test_readme.py::test_ci_runs_the_readme_test_command",),
    "dfractal render --fractal julia": ("tests/test_cli.py::test_render_each_family_from_the_command_line",),
    "dfractal render --mode distance": ("tests/test_cli.py::test_render_and_recolour_with_distance_shading",),
    "dfractal render --xpos -0.1010963638": ("tests/test_cli.py::test_deep_zoom_from_the_command_line",),
    "dfractal zoom --xpos": ("tests/test_cli.py::test_zoom_from_the_command_line_and_recolour",),
    "dfractal recolor mandelbrot.zarr": ("tests/test_recolor.py::test_recolor_any_palette_and_mode",
                                         "tests/test_recolor.py::test_recolor_at_another_supersampling",
                                         "tests/test_recolor.py::test_palettes_command"),
    "METRICS CLIENT time": ("tests/test_metrics.py::test_metrics_are_kept_in_the_store_and_shown_by_info",),  # output
    "dask scheduler --preload dfractal_dask.diagnostics": (
        "tests/test_diagnostics_dashboard.py::test_dask_scheduler_preload_with_a_dashboard_prefix",
        "tests/test_integration.py::test_preloaded_plugin_reports_both_named_workers"),
    "DASK_DFRACTAL__BLOCK_SAMPLES=1024": ("tests/test_readme.py::test_the_configuration_example_runs_as_written",),
    "dfractal render --cluster processes": (
        "tests/test_cluster.py::test_the_cluster_flag_reaches_the_embedded_cluster",),
    "dfractal explore ": ("tests/test_browser.py::test_explore_page_renders_and_a_wheel_zoom_renders_the_new_view",
                          "tests/test_cli.py::test_explore_on_a_taken_port"),
    'pip install -e ".[notebook]" && jupyter lab': (
        "tests/test_notebooks.py::test_notebook_runs",
        "tests/test_browser.py::test_jupyterlab_runs_the_explore_notebook_and_the_explorer_answers_a_zoom"),
    # the benchmarks are not part of the tests (README: shared, noisy machines), but dfractal bench is
    "python benchmarks/render.py": ("tests/test_bench.py::test_bench_command_writes_its_table_and_files",
                                    "tests/test_benchmarks_gigapixel.py::test_tiny_sizes_on_both_setups_print_their_numbers_and_leave_readable_stores"),
    "dask scheduler --host 10.0.0.5": (
        "tests/test_integration.py::test_dfractal_render_on_a_real_scheduler_and_two_workers",),
    "dask scheduler --protocol tls": ("tests/test_integration.py::test_render_over_a_tls_cluster",),
    "dfractal render --width 16384": ("tests/test_pyramid.py::test_cli_render_no_picture",
                                      "tests/test_pyramid.py::test_cli_render_pyramid_and_info",
                                      "tests/test_browser.py::test_explore_store_page_shows_the_stored_levels_and_escapes_its_name",
                                      "tests/test_recolor.py::test_recolor_dzi_is_the_png_recolor_writes"),
    "DASK_DFRACTAL__STALL_SECONDS=abc": ("tests/test_readme.py::test_the_bad_setting_example_runs_as_written",),
    'pip install -e ".[s3]" "moto[server]"': ("tests/test_readme.py::test_the_object_storage_example_runs_as_written",),
}  # fmt: skip


def test_every_readme_block_is_run_or_exercised_by_a_named_test():
    """A ```python block is run below; any other block must be listed in
    EXERCISED with tests that exist, so a new block cannot go untested."""
    import ast

    others = [text for lang, text in _blocks() if lang != "python"]
    assert PYTHON_BLOCKS and others
    for lang, _ in _blocks():
        assert lang in ("python", "bash", ""), f"a ```{lang} block: run it here or list it in EXERCISED"
    for text in others:
        keys = [k for k in EXERCISED if text.startswith(k)]
        assert len(keys) == 1, f"README block not run nor listed in EXERCISED (or listed twice):\n{text}"
    for key, tests in EXERCISED.items():
        matched = sum(text.startswith(key) for text in others)
        assert matched == 1, f"EXERCISED's {key!r} is the start of {matched} README blocks: one each"
        for test in tests:
            path, _, name = test.partition("::")
            tree = ast.parse((ROOT / path).read_text())
            defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
            assert not name or name in defined, f"{test} (for the README block {key!r}) does not exist"


@pytest.mark.cluster
@pytest.mark.parametrize("k", range(len(PYTHON_BLOCKS)))
def test_python_block_runs_as_a_script(k, tmp_path):
    """Each ```python block, written to a file and run by ``python script.py``
    in an empty folder (it must guard what starts processes), ends well and
    writes the pictures it names."""
    import os
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    (tmp_path / "script.py").write_text(PYTHON_BLOCKS[k] + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    names = re.findall(r'"(\w+)\.png"|save\("(\w+)"', PYTHON_BLOCKS[k])
    pngs = [tmp_path / f"{a or b}.png" for a, b in names]
    assert pngs, "each Python example writes a picture"
    for png in pngs:
        with Image.open(png) as im:
            assert im.format == "PNG" and len(np.unique(np.asarray(im.convert("RGBA")).reshape(-1, 4), axis=0)) > 10


def test_the_configuration_example_runs_as_written(tmp_path):
    """The Configuration section's block, run by bash in an empty folder: dask's
    environment variable reaches dfractal's block size (30 blocks, not 8)."""
    import os
    import subprocess

    (block,) = [t for lang, t in _blocks() if t.startswith("DASK_DFRACTAL__BLOCK_SAMPLES=1024")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "\nblocks: 30 of 30 written (16 sample rows each)\n" in p.stdout
    assert (tmp_path / "cfg.png").stat().st_size > 0
    p = subprocess.run(["dfractal", "render", "--overwrite", "--quiet", "--width", "64", "--height", "480",
                        "--smoothness", "1", "--outfile", "plain.png"], cwd=tmp_path, env=env, timeout=300)  # fmt: skip
    info = subprocess.run(["dfractal", "info", "plain.zarr"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert p.returncode == 0 and "blocks: 8 of 8 written" in info.stdout


def test_the_bad_setting_example_runs_as_written(tmp_path):
    """The Configuration section's refused setting: one line, the one the README shows, exit 2, nothing written."""
    import os
    import subprocess

    (block,) = [t for lang, t in _blocks() if t.startswith("DASK_DFRACTAL__STALL_SECONDS=abc")]
    command, shown = block.split("\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0 and p.stdout == "exit 2\n", p.stdout + p.stderr
    assert p.stderr == shown.removeprefix("# ") + "\n"
    assert list(tmp_path.iterdir()) == []
