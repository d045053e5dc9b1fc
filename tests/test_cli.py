"""The ``dfractal`` command line, in process (bad input) and for real (renders)."""

import shlex
import socket

import numpy as np
import pytest
from PIL import Image

from dfractal_dask import View, fractal_dataset, open_render
from dfractal_dask.cli import build_parser, main
from dfractal_dask.graph import blocks, compute_block
from dfractal_dask.store import create_store, write_block

SEED_DEFAULTS = {
    "width": 1024,
    "height": 768,
    "xpos": -0.00275,
    "ypos": 0.78912,
    "span": 0.125689,  # --escape-radius, the seed's name of --span
    "iters": 800,
    "step": 6000,
    "smoothness": 8,
    "palette": "Hippi",
    "outfile": "mandelbrot.png",
    "quiet": False,
    "metrics": False,
    "force_exit": False,
}


def test_render_flags_and_defaults_are_the_seeds():
    args = build_parser().parse_args(["render"])
    assert {k: getattr(args, k) for k in SEED_DEFAULTS} == SEED_DEFAULTS
    args = build_parser().parse_args(
        ["render", "-q", "-m", "--force-exit", "--host", "localhost:50051", "--retries", "2"]
    )
    assert (args.quiet, args.metrics, args.force_exit, args.host, args.retries) == (
        True,
        True,
        True,
        "localhost:50051",
        2,
    )


def test_version(capsys):
    from dfractal_dask import __version__

    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"dfractal {__version__}"


BAD = [
    ("--palette Nope", "unknown palette 'Nope'"),
    ("--palette Hipi", "did you mean Hippi"),
    ("--width 0", "--width: must be > 0"),
    ("--width -4", "--width: must be > 0"),
    ("--height abc", "--height: expected a whole number"),
    ("--iters 0", "--iters: must be > 0"),
    ("--xpos nan", "--xpos: expected a finite decimal number, got 'nan'"),
    ("--ypos inf", "--ypos: expected a finite decimal number, got 'inf'"),
    ("--xpos 0.1.2", "--xpos: expected a finite decimal number, got '0.1.2'"),
    ("--xpos -1e-30x", "--xpos: expected a finite decimal number, got '-1e-30x'"),
    ("--escape-radius 1e-1600", "span must be at least 1E-1500"),
    ("--escape-radius 1e-30 --fractal burning_ship", "deep zoom (perturbation) renders the Mandelbrot set only"),
    ("--escape-radius 1e-30 --distance", "distance estimation is not available for deep (perturbation) renders"),
    ("--perturbation --fractal julia", "deep zoom (perturbation) renders the Mandelbrot set only"),
    ("--escape-radius 0", "span must be > 0"),
    ("--escape-radius -0.5", "span must be > 0"),
    ("--smoothness 0", "--smoothness: must be > 0"),
    ("--step 0", "--step: must be > 0"),
    ("--chunk-rows 3", "multiple of the supersampling factor"),
    ("--width 100000000 --height 100000", "samples"),
    ("--scheduler not-an-address", "bad scheduler address"),
    ("--scheduler tcp://127.0.0.1:1", "cannot reach dask scheduler"),
    ("--bogus", "unrecognized arguments"),
    ("--resume", "--resume and --overwrite exclude each other"),  # (the test passes --overwrite)
    ("--outfile /etc/passwd/x.png", "cannot write the picture /etc/passwd/x.png: /etc/passwd is not a folder"),
    ("--store /etc/passwd/x.zarr", "cannot write the store /etc/passwd/x.zarr: /etc/passwd is not a folder"),
    (
        "--fractal mandelbort",
        "--fractal: unknown fractal 'mandelbort' (fractals: mandelbrot, julia, burning-ship, multibrot)",
    ),
    ("--power 3", "--power is for --fractal multibrot"),
    ("--fractal multibrot --power 1", "multibrot power must be from 2 to 16"),
    ("--fractal multibrot --power 2.5", "--power: invalid int value"),
    ("--julia-c 0.3", "--julia-c is for --fractal julia"),
    ("--fractal julia --julia-c 1.5,1.5", "julia c must be finite with |c| <= 2"),
    ("--fractal julia --julia-c one", "bad julia c 'one'"),
    ("--fractal julia --julia-c", "--julia-c: expected one argument"),
]


@pytest.mark.parametrize(("flags", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_one_line_exit_2_store_untouched(flags, words, tmp_path, capsys):
    # a real render store, offered for --overwrite: bad input must still leave it be
    store = tmp_path / "keep.zarr"
    view = View(width=4, height=4, supersample=1)
    create_store(store, fractal_dataset(view, 10), len(blocks(view)))
    write_block(store, blocks(view)[0], *compute_block(view, 10, blocks(view)[0])[:2])
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    argv = ["render", "--outfile", str(tmp_path / "x.png"), "--store", str(store), "--overwrite", *shlex.split(flags)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dfractal: error: ") and words in err, err
    assert "Traceback" not in err
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "x.png").exists()


def test_existing_store_without_overwrite(tmp_path, capsys):
    store = tmp_path / "x.zarr"
    store.mkdir()
    (store / "data").write_text("precious")
    # something that is no render store: said so, not "pass --overwrite" (which would not help)
    assert main(["render", "--outfile", str(tmp_path / "x.png")]) == 2
    assert "exists and is not a dfractal render store" in capsys.readouterr().err
    # --overwrite does not delete it either
    assert main(["render", "--outfile", str(tmp_path / "x.png"), "--overwrite"]) == 2
    assert "not a dfractal render store" in capsys.readouterr().err
    assert (store / "data").read_text() == "precious"


def test_no_command_prints_the_usage_and_the_commands_exit_2(capsys):
    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("usage: dfractal [-h] [--version] COMMAND ...")
    listed = [line.split()[0] for line in captured.err.splitlines() if line.startswith("    ") and line.split()]
    names = ["render", "zoom", "recolor", "explore", "bench", "info", "palettes", "version"]
    assert [n for n in listed if n in names] == names


@pytest.mark.cluster
def test_small_render_on_the_embedded_cluster(tmp_path, capsys):
    out = tmp_path / "img" / "m.png"
    argv = ["render", "--width", "48", "--height", "36", "--smoothness", "2", "--iters", "200", "--outfile", str(out)]
    assert main([*argv, "--metrics", "--workers", "2"]) == 0
    captured = capsys.readouterr()
    assert "dashboard: http://127.0.0.1:" in captured.err
    assert "100.0% " in captured.err  # the progress bar finished
    assert "METRICS CLIENT time:" in captured.out
    with Image.open(out) as im:
        assert im.size == (48, 36) and im.mode == "RGBA"
        pixels = np.asarray(im)
    assert len(np.unique(pixels.reshape(-1, 4), axis=0)) > 10
    ds = open_render(tmp_path / "img" / "m.zarr")
    assert ds.iterations.shape == (72, 96) and ds.attrs["iters"] == 200
    # a second run refuses the store; --quiet --overwrite replaces it silently
    assert main(argv) == 2
    capsys.readouterr()
    assert main([*argv, "--quiet", "--overwrite"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


FAMILY_RENDERS = [
    ("--fractal julia --julia-c -0.8+0.156j --xpos 0 --ypos 0", "julia", 2, -0.8 + 0.156j),
    ("--fractal burning-ship --xpos -0.5 --ypos -0.5", "burning_ship", 2, None),
    ("--fractal multibrot --power 3 --xpos 0 --ypos 0", "multibrot", 3, None),
]


@pytest.mark.cluster
@pytest.mark.parametrize(("flags", "family", "power", "c"), FAMILY_RENDERS, ids=[f[1] for f in FAMILY_RENDERS])
def test_render_each_family_from_the_command_line(flags, family, power, c, tmp_path, capsys):
    """The flags reach the workers: stored counts equal the plain-Python
    reference of the family, and the store says which fractal it holds."""
    from dfractal_dask.fractals import Fractal
    from dfractal_dask.kernels import escape_reference

    out = tmp_path / "f.png"
    size = "--width 40 --height 30 --smoothness 2 --escape-radius 3.2 --iters 150 --mode smooth --workers 2"
    argv = ["render", *shlex.split(size), "--outfile", str(out), *shlex.split(flags)]
    assert main(argv) == 0
    # the progress text and info name the family as --fractal spells it
    name = flags.split()[1] + (f" d={power}" if family == "multibrot" else f" c={c}" if family == "julia" else "")
    assert f"rendering {name} 40x30 " in capsys.readouterr().err
    ds = open_render(tmp_path / "f.zarr")
    fractal = Fractal.from_attrs(ds.attrs)
    assert (fractal.family, fractal.power, fractal.c) == (family, power, c)
    it = ds.iterations.values
    rng = np.random.default_rng(5)
    for i, j in zip(rng.integers(0, 60, 150), rng.integers(0, 80, 150), strict=True):
        assert it[i, j] == escape_reference(float(ds.re[j]), float(ds.im[i]), 150, fractal)[0]
    assert 0.01 < (it == 150).mean() < 0.9  # the set and its outside are both in view
    with Image.open(out) as im:
        assert im.size == (40, 30) and len(np.unique(np.asarray(im).reshape(-1, 4), axis=0)) > 20
    assert main(["info", str(tmp_path / "f.zarr")]) == 0
    assert f"fractal: {name}  iters: 150" in capsys.readouterr().out


BAD_EXPLORE = [
    ("--port 70000", "--port: must be a port number 0-65535"),
    ("--port http", "--port: expected a port number"),
    ("--mode histogram", "unknown --mode 'histogram' for explore"),
    ("--palette '#12345,#ffffff'", "#12345"),
    ("--iters 0", "--iters: must be > 0"),
    ("--span 0", "span must be > 0"),
    ("--xpos inf", "--xpos: expected a finite decimal number"),
    ("--save-dir /nonexistent/dir", "--save-dir /nonexistent/dir is not a directory"),
    ("--scheduler tcp://127.0.0.1:1", "cannot reach dask scheduler"),
]


@pytest.mark.parametrize(("flags", "words"), BAD_EXPLORE, ids=[b[0] for b in BAD_EXPLORE])
def test_explore_bad_input_one_line_exit_2(flags, words, capsys):
    assert main(["explore", *shlex.split(flags)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dfractal: error: ") and words in err, err


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # (tornado's socket was left open)
def test_explore_on_a_taken_port(client, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["explore", "--port", str(port), "--scheduler", client.scheduler.address]) == 2
    err = capsys.readouterr().err
    assert f"dfractal: error: cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


@pytest.mark.cluster
def test_render_and_recolour_with_distance_shading(tmp_path, capsys):
    out = tmp_path / "de.png"
    view = "--xpos -0.7436 --ypos 0.1318 --escape-radius 0.02 --width 40 --height 30 --smoothness 2 --iters 400"
    assert main(["render", "-q", *shlex.split(view), "--mode", "distance", "--outfile", str(out)]) == 0
    ds = open_render(tmp_path / "de.zarr")
    assert "distance" in ds and ds.attrs["distance"] is True
    assert (
        main(["recolor", "-q", str(tmp_path / "de.zarr"), "--mode", "smooth", "--outfile", str(tmp_path / "s.png")])
        == 0
    )
    with Image.open(out) as de, Image.open(tmp_path / "s.png") as smooth:
        assert (np.asarray(de)[..., :3].astype(int) < np.asarray(smooth)[..., :3].astype(int) - 40).mean() > 0.05
    # a store rendered without it: one clear line, exit 2, no picture
    assert main(["render", "-q", *shlex.split(view), "--outfile", str(tmp_path / "p.png")]) == 0
    capsys.readouterr()
    argv = ["recolor", str(tmp_path / "p.zarr"), "--mode", "distance", "--outfile", str(tmp_path / "x.png")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a render made with distance estimation" in err
    assert not (tmp_path / "x.png").exists()
    assert (
        main(["render", "--fractal", "burning-ship", "--mode", "distance", "--outfile", str(tmp_path / "b.png")]) == 2
    )
    assert "complex derivative" in capsys.readouterr().err


@pytest.mark.cluster
def test_deep_zoom_from_the_command_line(tmp_path, capsys):
    """A 45-digit centre at span 1e-30: the workers render it by perturbation,
    the store keeps every digit, and its counts equal mpmath's."""
    from dfractal_dask import perturbation

    x = "-0.101096363845622161025785445738622565463805443"
    y = "0.956286510809141500771096057729977435809833337"
    out = tmp_path / "deep.png"
    size = "--width 40 --height 30 --smoothness 2 --iters 1000 --workers 2 --mode smooth"
    argv = ["render", *shlex.split(size), "--xpos", x, "--ypos", y, "--escape-radius", "1e-30", "--outfile", str(out)]
    assert main(argv) == 0
    assert "1000 iterations, by perturbation)" in capsys.readouterr().err
    ds = open_render(tmp_path / "deep.zarr")
    view = View.from_attrs(ds.attrs)
    assert [str(d) for d in view.centre] == [x, y] and view.span == 1e-30
    it = ds.iterations.values
    for i, j in ((0, 0), (31, 40), (59, 79), (12, 66)):
        assert it[i, j] == perturbation.escape_exact(view, i, j, 1000)[0]
    with Image.open(out) as im:
        assert im.size == (40, 30) and len(np.unique(np.asarray(im).reshape(-1, 4), axis=0)) > 20
    assert main(["info", str(tmp_path / "deep.zarr")]) == 0
    assert f"view: centre ({x}, {y}) span 1e-30  (by perturbation)" in capsys.readouterr().out
    # recoloured from the store alone
    argv = ["recolor", "-q", str(tmp_path / "deep.zarr"), "--palette", "Hippi", "--outfile", str(tmp_path / "r.png")]
    assert main(argv) == 0
    with Image.open(tmp_path / "r.png") as im:
        assert im.size == (40, 30)
    # a negative exponent-form value is read as the flag's value
    assert main(["render", "-q", "--xpos", "-1e-30", "--escape-radius", "1e-1600", "--outfile", str(out)]) == 2
    assert "span must be at least" in capsys.readouterr().err


@pytest.mark.cluster
def test_zoom_from_the_command_line_and_recolour(tmp_path, capsys):
    from dfractal_dask.store import open_zoom

    x = "-0.101096363845622161025785445738622565463805443"
    y = "0.956286510809141500771096057729977435809833337"
    out = tmp_path / "z.gif"
    argv = ["zoom", "--xpos", x, "--ypos", y, "--span", "2", "--to-span", "1e-30", "--frames", "8",
            "--width", "32", "--height", "24", "--iters", "600", "--mode", "histogram", "--workers", "2",
            "--fps", "5", "--outfile", str(out)]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "8 frames 32x24, span 2 to 1e-30 (5 by perturbation)" in err and "100.0% 8/8 frames" in err
    ds = open_zoom(tmp_path / "z.zarr")
    assert ds.iterations.shape == (8, 48, 64) and ds.attrs["centre_re"] == x
    with Image.open(out) as im:
        assert (im.n_frames, im.size, im.info["duration"], im.info["loop"]) == (8, (32, 24), 200, 0)
        im.seek(7)
        last = np.asarray(im.convert("RGB"))
    assert len(np.unique(last.reshape(-1, 3), axis=0)) > 20
    assert main(["info", str(tmp_path / "z.zarr")]) == 0
    assert "zoom: 8 frames, span 2.0 to 1e-30; 8 of 8 frames written" in capsys.readouterr().out
    # recoloured from the store alone, as an APNG, in another palette
    apng = tmp_path / "again.png"
    argv = ["recolor", "-q", str(tmp_path / "z.zarr"), "--palette", "Viridis256", "--mode", "smooth",
            "--outfile", str(apng)]  # fmt: skip
    assert main(argv) == 0
    with Image.open(apng) as im:
        assert im.n_frames == 8 and im.size == (32, 24)
        im.seek(7)
        assert not np.array_equal(np.asarray(im.convert("RGB")), last)
    assert main(["recolor", "-q", str(tmp_path / "z.zarr")]) == 0  # default: STORE with .gif
    assert (tmp_path / "z.gif").stat().st_size > 0
    # a second run refuses the store, exit 2 and one line
    assert main(["zoom", "--to-span", "1e-3", "--frames", "2", "--width", "8", "--height", "6",
                            "--outfile", str(out)]) == 2  # fmt: skip
    assert "already exists" in capsys.readouterr().err


BAD_ZOOM = [
    ("", "the following arguments are required: --to-span"),
    ("--to-span 1e-3 --frames 1", "frames must be >= 2"),
    ("--to-span 0", "--to-span must be > 0"),
    ("--to-span 1e-1600", "span must be at least 1E-1500"),
    ("--to-span 1e-3 --outfile z.jpg", "must end in .gif or .png"),
    ("--to-span 1e-3 --fps 0", "--fps must be above 0"),
    ("--to-span 1e-3 --mode distance", "--mode distance is not available for zooms"),
    ("--to-span 1e-3 --mode sepia", "unknown --mode 'sepia'"),
    ("--to-span 1e-30 --fractal julia", "deep zoom (perturbation) renders the Mandelbrot set only"),
    ("--to-span 1e-3 --resume --overwrite", "--resume and --overwrite exclude each other"),
    ("--to-span 1e-3 --xpos abc", "--xpos: expected a finite decimal number"),
]


@pytest.mark.parametrize(("flags", "words"), BAD_ZOOM, ids=[b[0] or "none" for b in BAD_ZOOM])
def test_zoom_bad_input_one_line_exit_2(flags, words, tmp_path, capsys):
    argv = ["zoom", "--store", str(tmp_path / "z.zarr"), *shlex.split(flags)]
    if "--outfile" not in flags:
        argv += ["--outfile", str(tmp_path / "z.gif")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert list(tmp_path.iterdir()) == []
