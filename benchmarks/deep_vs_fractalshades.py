"""Deep zoom: dfractal against Fractalshades 1.2.1, side by side in one run (issue 18).

    python benchmarks/deep_vs_fractalshades.py --fractalshades-venv DIR [--views a,b,c,d]
        [--repeats 2] [--workers 2] [--samples 200]

``DIR`` is a virtualenv holding Fractalshades (``pip install fractalshades "numpy<2.4"``;
it builds against MPFR: Debian's ``libmpfr-dev libgmp-dev libmpc-dev``).  Without one
the script prints one line and exits 0.  Not a test: these machines are shared and
noisy, so the two tools run interleaved and each time is a whole process.

Views, 800x600 pixels (one sample each), the Mandelbrot set:

a. the tests' Misiurewicz point (the 1/3 limb's branch point) at span 1e-30, limit 5 000;
b. the README's 1e-60 location (the same point to 90 digits), limit 20 000;
c. Fractalshades' "flake" (its example ``09-run_flake_DEM.py``: centre to 164 digits,
   span 1.7e-157), limit 1 000 000;
d. a period-162 minibrot (size estimate 1.8e-41) 3.5e-21 from (b)'s point, centred on
   its nucleus at span 1e-40, limit 1 000 000: its interior fills part of the view.
   Found by the atom-domain method (the steps where ``|z_n|`` of a point ~1e-21 from
   the Misiurewicz point reaches a new minimum give candidate periods), Newton's method
   on ``z_p(c) = 0`` at 400 bits for the nucleus, and the size estimate
   ``1 / |β λ²|`` (``λ = Π 2 z_k``, ``β = Σ 1/Π_{k<j} 2 z_k``).

Each run, per view, in this order, ``--repeats`` times:

* dfractal: ``dfractal render --workers W --smoothness 1 --width 800 --height 600 --xpos
  --ypos --escape-radius --iters`` into a fresh folder (embedded LocalCluster, its PNG
  included); the counts are read back with :func:`dfractal_dask.open_render`.
* Fractalshades: a driver (written to a fresh temporary folder, because Fractalshades
  reuses results it finds in its folder) run by the virtualenv's python:
  ``Perturbation_mandelbrot.zoom(x, y, dx=span, nx=800, xy_ratio=799/599)`` (its pixel
  centres are then dfractal's: ``centre + dx * ((ix - (nx-1)/2)/(nx-1), -(iy -
  (ny-1)/2)/(ny-1)/xy_ratio)``), ``calc_std_div(M_divergence=2, BLA_eps=1e-8,
  calc_dzndc=False)`` (its example's BLA tolerance; no derivative, as dfractal computes
  none; ``interior_detect`` only for (d), as its documentation advises where a minibrot
  fills part of the view), ``calc_raw``,
  then the raw ``stop_iter`` array (the one ``Raw_pp("stop_iter")`` and
  ``Fractal_array(f, "div", "stop_iter")`` read) tile by tile with
  ``Fractal.reload_data``, saved as ``.npy`` with its ``stop_reason``.  Its count of
  an escaping pixel is dfractal's, the first ``n`` with ``|z_n| > 2`` (``z_0 = 0``); a
  pixel stopped for "max_iter" (its count may overshoot the limit by a BLA step) or
  "stationary" (interior detected) counts as the limit, as dfractal's do.

Then: the corners of the two grids are compared (in sample steps), and a sample of
``--samples`` pixels (seeded), plus up to as many where the two tools disagree, is
computed by direct iteration in fixed point (:func:`escape_direct`, gmpy2 integers,
:func:`bits_for` bits); where either tool differs from it, again in gmpy2 ``mpfr``
(:func:`escape_mpfr`) at 2, 4, 8 times the bits until two precisions in a row agree
(how many changed, and how many never settled, is printed).  Near the minibrot (d)
at 1 000 000 iterations 15 of 200 disputed pixels changed from 207 to 414 bits and
none after.  The table: times (best, median; Fractalshades' own ``calc_raw`` time in
brackets), the ratio of the best times against the issue's target, each tool's
exact-agreement fraction on the seeded sample, how many of the disputed pixels each
(or neither) got right, and the fraction of all pixels where the two tools agree.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path

import gmpy2
import numpy as np

WIDTH, HEIGHT = 800, 600
#: Fractalshades' BLA tolerance, its flake example's (its default is 1e-6).
FS_BLA_EPS = 1e-8
SEED = 18
#: Disputed pixels are iterated again at up to this many times the bits.
MAX_BITS_SCALE = 8


@dataclass(frozen=True)
class DeepView:
    """One benchmark view: centre (decimal strings), span, iteration limit, the
    issue's target for dfractal's time over Fractalshades', and whether
    Fractalshades detects interior points."""

    name: str
    label: str
    x: str
    y: str
    span: str
    iters: int
    target: float
    interior_detect: bool = False


MIS_X = "-0.101096363845622161025785445738622565463805443"
MIS_Y = "0.956286510809141500771096057729977435809833337"
MIS_X90 = "-0.101096363845622161025785445738622565463805442826253483876931177660780840740470584274821220"
MIS_Y90 = "0.956286510809141500771096057729977435809833336510529170034314321500524659065716732526978411"
FLAKE_X = (
    "-1.99996619445037030418434688506350579675531241540724851511761922944801584242342684381376129778868913812287046406"
    "560949864353810575744772166485672496092803920095332"
)
FLAKE_Y = (
    "-0.00000000000000000000000000000000030013824367909383240724973039775924987346831190773335270174257280120474975614"
    "823581185647299288414075519224186504978181625478529"
)
MINI_X = "-0.10109636384562216102273619188760661772524555808564650482578702227849810563523016003344910586919"
MINI_Y = "0.95628651080914150076930089609835090924557871679048404003476172726212511285274480188307730508333"

VIEWS = {
    v.name: v
    for v in (
        DeepView("a", "1e-30 branch point", MIS_X, MIS_Y, "1e-30", 5_000, 0.8),
        DeepView("b", "1e-60 branch point", MIS_X90, MIS_Y90, "1e-60", 20_000, 0.8),
        DeepView("c", "flake 1.7e-157", FLAKE_X, FLAKE_Y, "1.7e-157", 1_000_000, 0.5),
        DeepView("d", "minibrot 1e-40", MINI_X, MINI_Y, "1e-40", 1_000_000, 0.5, interior_detect=True),
    )
}

# The Fractalshades side, run by the virtualenv's python in its own folder:
# argv[1] is a JSON file of parameters.  Only Fractalshades' public calls and
# raw arrays; nothing of it is copied here.
FS_DRIVER = """\
import json, sys, time
import mpmath
import numpy as np
import fractalshades as fs
import fractalshades.models as fsm
import fractalshades.settings as settings

p = json.load(open(sys.argv[1]))
settings.enable_multithreading = True
f = fsm.Perturbation_mandelbrot(p["dir"])
f.zoom(precision=p["precision"], x=p["x"], y=p["y"], dx=p["dx"], nx=p["nx"], xy_ratio=p["xy_ratio"],
       theta_deg=0.0, projection=fs.projection.Cartesian())
f.calc_std_div(calc_name="div", subset=None, max_iter=p["iters"], M_divergence=2.0, epsilon_stationnary=1e-3,
               BLA_eps=p["bla_eps"], interior_detect=p["interior_detect"], calc_dzndc=False)
t = time.perf_counter()
f.calc_raw("div")
calc = time.perf_counter() - t
counts = np.zeros((f.ny, f.nx), np.int64)
reason = np.zeros((f.ny, f.nx), np.int8)
corners = []
for cs in f.chunk_slices():
    ix, ixx, iy, iyy = cs
    subset, c_pix, Z, U, stop_reason, stop_iter = f.reload_data(cs, "div")
    # a tile's points are stored row by row (y major), as chunk_pixel_pos lays them
    counts[iy:iyy, ix:ixx] = np.reshape(stop_iter[0], (iyy - iy, ixx - ix))
    reason[iy:iyy, ix:ixx] = np.reshape(stop_reason[0], (iyy - iy, ixx - ix))
    pix = f.chunk_pixel_pos(cs, jitter=False, supersampling=None)
    if ix == 0 and iy == 0:
        corners.append(pix[0, 0])
    if ixx == f.nx and iyy == f.ny:
        corners.append(pix[-1, -1])
np.save(p["out"] + ".counts.npy", counts)
np.save(p["out"] + ".reason.npy", reason)
pts = [(mpmath.mpf(p["x"]) + f.dx * mpmath.mpf(float(z.real)), mpmath.mpf(p["y"]) + f.dx * mpmath.mpf(float(z.imag)))
       for z in corners]
json.dump({"ny": f.ny, "nx": f.nx, "calc_seconds": calc, "version": fs.__version__,
           "corners": [[mpmath.nstr(a, p["precision"]), mpmath.nstr(b, p["precision"])] for a, b in pts]},
          open(p["out"] + ".json", "w"))
"""


# -- direct iteration ----------------------------------------------------------
def bits_for(step: float) -> int:
    """Bits after the binary point for direct iteration: 64 more than the step needs."""
    return max(64, math.ceil(-math.log2(step)) + 64)


def escape_direct(re: Fraction, im: Fraction, iters: int, bits: int) -> int:
    """The escape count of ``c = re + i im`` by direct iteration in fixed point:
    gmpy2 integers scaled by ``2**bits``, each product truncated back.

    Returns the first ``n`` with ``|z_n|² > 4`` (``z_0 = 0``), or ``iters``.
    """
    cx = gmpy2.mpz((re.numerator << bits) // re.denominator)
    cy = gmpy2.mpz((im.numerator << bits) // im.denominator)
    four = gmpy2.mpz(4) << (2 * bits)
    x = y = gmpy2.mpz(0)
    for n in range(iters):
        x2, y2 = x * x, y * y
        if x2 + y2 > four:
            return n
        y = ((x * y) >> (bits - 1)) + cy
        x = ((x2 - y2) >> bits) + cx
    return iters


def escape_mpfr(re: Fraction, im: Fraction, iters: int, bits: int) -> int:
    """:func:`escape_direct` in gmpy2 ``mpfr`` floating point of ``bits`` bits (slower)."""
    with gmpy2.context(precision=bits):
        cx = gmpy2.mpfr(gmpy2.mpq(re.numerator, re.denominator))
        cy = gmpy2.mpfr(gmpy2.mpq(im.numerator, im.denominator))
        x = y = gmpy2.mpfr(0)
        for n in range(iters):
            x2, y2 = x * x, y * y
            if x2 + y2 > 4:
                return n
            y = gmpy2.mul_2exp(x * y, 1) + cy
            x = x2 - y2 + cx
    return iters


def _direct(args: tuple[str, Fraction, Fraction, int, int]) -> int:
    kind, re, im, iters, bits = args
    return (escape_direct if kind == "fixed" else escape_mpfr)(re, im, iters, bits)


def direct_counts(
    points: Sequence[tuple[Fraction, Fraction]], iters: int, bits: int, kind: str, workers: int
) -> list[int]:
    """:func:`escape_direct` (``kind="fixed"``) or :func:`escape_mpfr` of each point,
    in ``workers`` processes."""
    jobs = [(kind, re, im, iters, bits) for re, im in points]
    if workers <= 1 or len(jobs) < 2:
        return [_direct(j) for j in jobs]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_direct, jobs, chunksize=1))


# -- the two tools -------------------------------------------------------------
def run_dfractal(
    v: DeepView, width: int, height: int, iters: int, workers: int, base: Path
) -> tuple[float, np.ndarray]:
    """One whole ``dfractal render`` process: its wall time and its counts."""
    from dfractal_dask import open_render

    folder = Path(tempfile.mkdtemp(prefix="dfractal-", dir=base))
    cmd = [
        sys.executable, "-m", "dfractal_dask", "render", "-q",
        "--workers", str(workers), "--smoothness", "1", "--width", str(width), "--height", str(height),
        "--xpos", v.x, "--ypos", v.y, "--escape-radius", v.span, "--iters", str(iters),
        "--store", str(folder / "r.zarr"), "--outfile", str(folder / "r.png"),
    ]  # fmt: skip
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - t
    counts = open_render(folder / "r.zarr").iterations.values.astype(np.int64)
    shutil.rmtree(folder)
    return seconds, counts


def run_fractalshades(
    python: Path, v: DeepView, width: int, height: int, iters: int, base: Path
) -> tuple[float, np.ndarray, dict]:
    """One whole Fractalshades process in a fresh folder: its wall time, its
    counts (those that did not escape as ``iters``) and what its driver reported."""
    folder = Path(tempfile.mkdtemp(prefix="fractalshades-", dir=base))
    (folder / "driver.py").write_text(FS_DRIVER)
    params = {
        "dir": str(folder / "fs"), "out": str(folder / "out"), "x": v.x, "y": v.y, "dx": v.span,
        "precision": max(len(v.x), len(v.y)) + 10, "nx": width, "xy_ratio": (width - 1) / (height - 1),
        "iters": iters, "bla_eps": FS_BLA_EPS, "interior_detect": v.interior_detect,
    }  # fmt: skip
    (folder / "params.json").write_text(json.dumps(params))
    env = {k: val for k, val in os.environ.items() if k != "PYTHONPATH"}  # its own packages only
    t = time.perf_counter()
    subprocess.run(
        [str(python), "driver.py", "params.json"], cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL
    )
    seconds = time.perf_counter() - t
    counts = np.load(folder / "out.counts.npy")
    reason = np.load(folder / "out.reason.npy")
    # not "divergence": "max_iter" (a BLA step may overshoot it: 1 000 025 of
    # 1 000 000 was seen) or "stationary" (interior detected) are the limit
    counts[reason != 1] = iters
    report = json.loads((folder / "out.json").read_text())
    shutil.rmtree(folder)
    return seconds, counts, report


def check_venv(path: Path) -> tuple[Path | None, str]:
    """The virtualenv's python and Fractalshades' version, or ``None`` and why not."""
    python = path / "bin" / "python"
    if not python.exists():
        return None, f"no python at {python}"
    r = subprocess.run(
        [str(python), "-c", "import fractalshades, sys; sys.stdout.write(fractalshades.__version__)"],
        capture_output=True,
        text=True,
        env={k: val for k, val in os.environ.items() if k != "PYTHONPATH"},
    )
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"its python cannot import fractalshades ({last})"
    return python, r.stdout.strip()


def grid_offset(v: DeepView, width: int, height: int, corners: list[list[str]]) -> float:
    """How far Fractalshades' corner pixels are from dfractal's samples (0, 0)
    and (H-1, W-1), in sample steps (the larger of the two)."""
    from dfractal_dask import View
    from dfractal_dask.perturbation import sample_point

    view = View(v.x, v.y, span=float(v.span), width=width, height=height, supersample=1)
    ours = [sample_point(view, 0, 0), sample_point(view, height - 1, width - 1)]
    step = Fraction(view.step)
    worst = 0.0
    for (re, im), (fre, fim) in zip(ours, corners, strict=True):
        worst = max(worst, float(abs(Fraction(fre) - re) / step), float(abs(Fraction(fim) - im) / step))
    return worst


def check_view(
    v: DeepView, width: int, height: int, df: np.ndarray, fs: np.ndarray, samples: int, workers: int
) -> dict:
    """Both tools' counts against direct iteration: see the module docstring."""
    from dfractal_dask import View
    from dfractal_dask.perturbation import sample_point

    view = View(v.x, v.y, span=float(v.span), width=width, height=height, supersample=1)
    rng = np.random.default_rng(SEED)
    seeded = rng.choice(df.size, size=min(samples, df.size), replace=False)
    differ = np.flatnonzero(df.ravel() != fs.ravel())
    disputed = rng.choice(differ, size=min(samples, differ.size), replace=False) if differ.size else differ
    pixels = np.concatenate([seeded, disputed])
    points = [sample_point(view, int(k) // width, int(k) % width) for k in pixels]
    bits = bits_for(view.step)
    exact = np.array(direct_counts(points, v.iters, bits, "fixed", workers))
    d, f = df.ravel()[pixels], fs.ravel()[pixels]
    # where a tool disagrees, iterate again at twice the bits, and again, until
    # two precisions in a row give the same count
    doubt = np.flatnonzero((d != exact) | (f != exact))
    changed, scale = 0, 2
    while doubt.size and scale <= MAX_BITS_SCALE:
        again = np.array(direct_counts([points[k] for k in doubt], v.iters, scale * bits, "mpfr", workers))
        moved = again != exact[doubt]
        changed += int(moved.sum()) if scale == 2 else 0
        exact[doubt] = again
        doubt, scale = doubt[moved], 2 * scale
    unsettled = np.zeros(exact.size, bool)
    unsettled[doubt] = True  # still moving at MAX_BITS_SCALE times the bits
    n = seeded.size
    return {
        "samples": n,
        "df_exact": float((d[:n] == exact[:n]).mean()),
        "fs_exact": float((f[:n] == exact[:n]).mean()),
        "differ": int(differ.size),
        "disputed": int(disputed.size),
        "df_right": int((d[n:] == exact[n:]).sum()),
        "fs_right": int((f[n:] == exact[n:]).sum()),
        "neither": int(((d[n:] != exact[n:]) & (f[n:] != exact[n:]) & ~unsettled[n:]).sum()),
        "agree": float((df == fs).mean()),
        "bits": bits,
        "changed": changed,
        "unsettled": int(unsettled.sum()),
        "pixels": pixels,
        "exact": exact,
        "interior": float((exact[:n] == v.iters).mean()),
    }


def save(folder: Path, v: DeepView, df: np.ndarray, fs: np.ndarray, check: dict) -> None:
    """Keep a view's counts (``{name}-dfractal.npy``, ``{name}-fractalshades.npy``)
    and its check (``{name}-check.npz``: the pixels iterated directly, flat
    indices, and their counts) for a closer look."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{v.name}-dfractal.npy", df)
    np.save(folder / f"{v.name}-fractalshades.npy", fs)
    np.savez(folder / f"{v.name}-check.npz", pixels=check["pixels"], exact=check["exact"], samples=check["samples"])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractalshades-venv", type=Path, default=None, help="virtualenv holding Fractalshades")
    parser.add_argument("--views", default="a,b", help="comma-separated, of a, b, c, d (a,b)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each tool per view (2)")
    parser.add_argument("--workers", type=int, default=2, help="dfractal's local workers; sampler processes (2)")
    parser.add_argument("--samples", type=int, default=200, help="seeded pixels checked by direct iteration (200)")
    parser.add_argument("--save", type=Path, default=None, help="folder to keep both tools' counts and the check in")
    parser.add_argument("--width", type=int, default=WIDTH, help=f"pixels ({WIDTH}; the issue's grid)")
    parser.add_argument("--height", type=int, default=HEIGHT, help=f"pixels ({HEIGHT})")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.views.split(",") if n.strip()]
    bad = [n for n in names if n not in VIEWS]
    problem = None
    if bad or not names:
        problem = f"--views: unknown view {', '.join(bad) or '(none)'}; choose among {', '.join(VIEWS)}"
    for name in ("repeats", "workers", "samples", "width", "height"):
        if getattr(args, name) < 1:
            problem = f"--{name} must be at least 1, not {getattr(args, name)}"
    if problem:
        print(f"deep_vs_fractalshades: {problem}", file=sys.stderr)
        sys.exit(2)
    args.views = names
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.fractalshades_venv is None:
        print("deep_vs_fractalshades: skipped, no --fractalshades-venv given")
        return
    python, version = check_venv(args.fractalshades_venv)
    if python is None:
        print(f"deep_vs_fractalshades: skipped, {args.fractalshades_venv} is no Fractalshades virtualenv: {version}")
        return
    w, h = args.width, args.height
    print(f"Fractalshades {version} ({args.fractalshades_venv}); dfractal on {args.workers} local workers; "
          f"{w}x{h}; load average at start {os.getloadavg()[0]:.2f}")  # fmt: skip
    base = Path(tempfile.mkdtemp(prefix="deep-vs-fs-"))
    rows = []
    try:
        # compile / load from cache, untimed: numba's on-disk caches of both tools
        small = VIEWS["a"]
        run_dfractal(small, 32, 24, 500, args.workers, base)
        run_fractalshades(python, small, 32, 24, 500, base)
        for name in args.views:
            v = VIEWS[name]
            df_t, fs_t, fs_calc = [], [], []
            for r in range(args.repeats):
                t, df = run_dfractal(v, w, h, v.iters, args.workers, base)
                df_t.append(t)
                t, fs, report = run_fractalshades(python, v, w, h, v.iters, base)
                fs_t.append(t)
                fs_calc.append(report["calc_seconds"])
                print(f"  ({name}) run {r + 1}: dfractal {df_t[-1]:.1f} s, Fractalshades {fs_t[-1]:.1f} s "
                      f"(its calc_raw {fs_calc[-1]:.1f} s)", flush=True)  # fmt: skip
            if df.shape != fs.shape:
                print(f"  ({name}) grids differ in shape: dfractal {df.shape}, Fractalshades {fs.shape}")
                continue
            offset = grid_offset(v, w, h, report["corners"])
            check = check_view(v, w, h, df, fs, args.samples, args.workers)
            rows.append((v, df_t, fs_t, fs_calc, offset, check))
            if args.save is not None:
                save(args.save, v, df, fs, check)
            c = check
            print(f"  ({name}) corners within {offset:.1e} steps; {c['differ']} pixels differ, "
                  f"{c['disputed']} of them checked; "
                  f"direct iteration at {c['bits']} bits ({c['changed']} changed at {2 * c['bits']}, "
                  f"{c['unsettled']} still changing at {MAX_BITS_SCALE * c['bits']}); "
                  f"{100 * c['interior']:.0f}% of the seeded sample inside", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print()
    print(f"{'view':24} {'dfractal s best/median':>22} {'Fractalshades s (calc)':>23} {'ratio':>6} {'target':>7} "
          f"{'df exact':>9} {'fs exact':>9} {'disputed: df/fs/neither right':>30} {'df==fs':>8}")  # fmt: skip
    for v, df_t, fs_t, fs_calc, _, c in rows:
        times = (
            f"{min(df_t):10.1f} /{statistics.median(df_t):8.1f} "
            f"{min(fs_t):7.1f} /{statistics.median(fs_t):6.1f} ({statistics.median(fs_calc):5.1f})"
        )
        right = f"{c['df_right']:>11}/{c['fs_right']}/{c['neither']:<5} of {c['disputed']:<5}"
        print(f"({v.name}) {v.label:20} {times} {min(df_t) / min(fs_t):6.2f} {'<=' + str(v.target):>7} "
              f"{c['df_exact']:9.3f} {c['fs_exact']:9.3f} {right} {c['agree']:8.4f}")  # fmt: skip
    print(f"(exact: fraction of {args.samples} seeded pixels equal to direct iteration; disputed: pixels where the "
          f"two differ; ratio: best dfractal over best Fractalshades whole-process time; "
          f"load average at end {os.getloadavg()[0]:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
