"""What the commands write: progress and notes on stderr, pictures in the
format their ``--outfile`` names, animations."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
from PIL import Image

from ..animation import ANIMATION_FORMATS
from ..location import Location
from ..png import save_png
from .errors import UsageError

__all__ = ["PICTURE_FORMATS", "Progress", "beside", "check_animation_flags", "check_picture_format", "save_picture",
           "say"]  # fmt: skip

#: Picture formats by ``--outfile`` ending (Pillow's names).  PNG is streamed
#: (:func:`~dfractal_dask.png.save_png`); the others are made whole by Pillow.
PICTURE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}


def say(args: argparse.Namespace, text: str) -> None:
    """A note on stderr, unless --quiet."""
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


class Progress:
    """A text progress bar on stderr; on a non-terminal, a line every 10 %."""

    def __init__(self, label: str, unit: str = "blocks") -> None:
        self.label = label
        self.unit = unit
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.last_decile = -1

    def __call__(self, done: int, total: int) -> None:
        frac = done / total if total else 1.0
        elapsed = time.perf_counter() - self.t0
        bar = "#" * int(30 * frac)
        line = f"{self.label} [{bar:<30}] {100 * frac:5.1f}% {done}/{total} {self.unit} {elapsed:6.1f}s"
        if self.tty:
            print("\r" + line, end="\n" if done == total else "", file=sys.stderr, flush=True)
        elif int(10 * frac) > self.last_decile:
            self.last_decile = int(10 * frac)
            print(line, file=sys.stderr, flush=True)


def check_picture_format(outfile: Path) -> str:
    """Pillow's name of the format ``outfile``'s ending names, or a UsageError."""
    try:
        return PICTURE_FORMATS[outfile.suffix.lower()]
    except KeyError:
        known = ", ".join(PICTURE_FORMATS)
        raise UsageError(f"--outfile {outfile}: unknown picture format {outfile.suffix!r} (endings: {known})") from None


def save_picture(rgba: np.ndarray | da.Array | xr.DataArray, outfile: Path) -> Path:
    """Write ``(h, w, 4)`` uint8 ``rgba`` as the format ``outfile`` names: a PNG
    streamed a strip at a time, the others through Pillow (JPEG without the
    alpha it cannot hold), by way of a ``.part`` file so no half picture stays."""
    fmt = check_picture_format(outfile)
    if fmt == "PNG":
        save_png(rgba, outfile)  # a local path: written where it is
        return outfile
    pixels = np.asarray(rgba.compute() if isinstance(rgba, da.Array) else rgba)
    image = Image.fromarray(pixels, "RGBA" if pixels.shape[2] == 4 else "RGB")
    if fmt == "JPEG":
        image = image.convert("RGB")
    outfile.parent.mkdir(parents=True, exist_ok=True)
    tmp = outfile.with_name(outfile.name + ".part")
    try:
        image.save(tmp, format=fmt)
        tmp.replace(outfile)
    finally:
        tmp.unlink(missing_ok=True)
    return outfile


def check_animation_flags(args: argparse.Namespace, outfile: Path) -> None:
    """An animation's --outfile ending, --fps and --mode."""
    if outfile.suffix.lower() not in ANIMATION_FORMATS:
        raise UsageError(f"--outfile {outfile} must end in .gif or .png (an animation)")
    if not 0 < args.fps <= 100:
        raise UsageError(f"--fps must be above 0 and at most 100, got {args.fps:g}")
    if args.mode == "distance":
        raise UsageError("--mode distance is not available for zooms (they store no distance estimates)")


def beside(loc: Location, suffix: str) -> Path:
    """A local store's picture goes beside it; a URL's, into this folder."""
    return Path(loc.url).with_suffix(suffix) if loc.is_local else Path(loc.with_suffix(suffix))
