"""Zoom animations: colour each frame of a zoom and encode them as an animated
GIF or PNG (APNG) with pillow.

A zoom (:func:`dfractal_dask.pipeline.zoom`, :func:`dfractal_dask.store.open_zoom`)
holds counts, not colours, so any palette or mode can recolour it afterwards
without recomputing: this module only colours and encodes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import dask
import numpy as np
import xarray as xr
from PIL import GifImagePlugin, Image, ImageChops, PngImagePlugin

from .colorize import color_picture
from .palettes import DEFAULT_PALETTE, DEFAULT_STEP, Palette

__all__ = ["ANIMATION_FORMATS", "FRAME_BATCH", "color_frames", "save_animation"]

#: File name endings :func:`save_animation` writes: animated GIF, animated PNG.
ANIMATION_FORMATS = (".gif", ".png")

#: Frames :func:`color_frames` colours in one dask computation.
FRAME_BATCH = 8


def color_frames(
    ds: xr.Dataset,
    palette: str | Palette | list[str] = DEFAULT_PALETTE,
    step: int = DEFAULT_STEP,
    mode: str = "smooth",
    *,
    interior: str | tuple[int, int, int] = "#000000",
    supersample: int | None = None,
    scheduler: str | None = "threads",
) -> Iterator[np.ndarray]:
    """The frames of a zoom, coloured one at a time as ``(h, w, 4)`` uint8 RGBA
    (:func:`dfractal_dask.colorize.color_picture` on each; ``histogram`` mode
    equalises each frame by its own counts).  A lazy zoom is coloured
    :data:`FRAME_BATCH` frames at a time, each batch one dask computation, so
    memory holds a few frames, never the zoom.

    ``scheduler``: dask's local ``"threads"`` by default (the frames come to
    this process for encoding anyway, and on a 2-core machine colouring 48
    frames of 200×150 took 2.7 s here against 8 s through a LocalCluster);
    ``None`` for the current scheduler, e.g. a cluster that can read the store.
    """
    if not isinstance(ds, xr.Dataset) or "frame" not in ds.dims:
        raise TypeError("color_frames needs a zoom Dataset with a 'frame' dimension (see open_zoom)")
    n = ds.sizes["frame"]
    # (histogram mode counts each frame as its picture is set up: that too on `scheduler`)
    for k0 in range(0, n, FRAME_BATCH):
        # a few frames per compute: one graph instead of one round trip a frame
        with dask.config.set(scheduler=scheduler) if scheduler is not None else contextlib.nullcontext():
            lazy = [
                color_picture(ds.isel(frame=k), palette, step, mode, interior=interior, supersample=supersample)
                for k in range(k0, min(k0 + FRAME_BATCH, n))
            ]
            done = dask.compute(*lazy)
        yield from (np.asarray(f) for f in done)


def _image(frame: np.ndarray, k: int) -> Image.Image:
    # a frame as pillow's image: (h, w, 3|4) uint8 (integers from 0 to 255 taken as such), else a ValueError
    a = np.asarray(frame)
    if a.dtype != np.uint8 and a.dtype.kind in "ui" and a.size and a.min() >= 0 and a.max() <= 255:
        a = a.astype(np.uint8)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"frames must be (h, w, 3|4) uint8 arrays: frame {k} is {a.dtype} {a.shape}")
    return Image.fromarray(a)


def save_animation(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 12.0) -> Path:
    """Encode ``frames`` (``(h, w, 3|4)`` uint8 arrays, all one size) as an
    animated GIF or PNG, by ``path``'s ending, looping forever at ``fps``
    frames a second (equal frames in a row become one frame shown as long).
    Written beside ``path`` first and then renamed, so a failure never leaves
    half a file.

    ``frames`` is read once, lazily (a generator such as :func:`color_frames`
    is encoded as its frames arrive): memory holds a few frames, never the
    animation (issue 16).  The file is what pillow's ``save_all`` writes for
    the same frames (see :class:`_GifFrames`, :class:`_ApngFrames`).

    Raises
    ------
    ValueError
        For another ending, a non-positive ``fps``, no frames, or frames of
        different sizes; for a PNG also a frame that cannot take the first
        frame's mode without loss (an RGBA frame with transparent pixels after
        an RGB one).
    """
    path = Path(path)
    if path.suffix.lower() not in ANIMATION_FORMATS:
        raise ValueError(f"cannot write an animation to {path.name}: use a .gif or .png file name")
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps <= 100:
        raise ValueError(f"fps must be a number above 0 and at most 100, got {fps!r}")
    stream = iter(frames)
    first = next(stream, None)
    if first is None:
        raise ValueError("no frames to write")
    im = _image(first, 0)
    del first
    size = im.size
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(part, "wb") as fp:
            writer = (_GifFrames if path.suffix.lower() == ".gif" else _ApngFrames)(fp, round(1000 / fps))
            writer.add(im)
            for k, f in enumerate(stream, 1):
                im = _image(f, k)
                del f
                if im.size != size:
                    raise ValueError(f"frames differ in size: {sorted({size, im.size})} (frame {k})")
                writer.add(im)
            del im
            writer.close()
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return path


# pillow's save_all collects every frame before it writes one: GifImagePlugin and
# PngImagePlugin._write_multiple_frames build a list of them, to merge equal
# frames in a row and, for APNG, to count them for acTL (and PngImagePlugin._save
# reads append_images twice, so a generator there gives a one-frame PNG).  The
# two writers below do what those functions do, a frame at a time, with pillow's
# per-frame pieces: GifImagePlugin.getheader and _write_frame_data (what the
# public getdata wraps), PngImagePlugin.getchunks and putchunk.  Each holds the
# last distinct frame (the next is compared with it, and its duration grows while
# equal frames follow) and writes it when a different frame, or the end, arrives.
# tests/test_animation.py checks that the files read back as pillow's own.


class _GifFrames:
    """Animated GIF as ``GifImagePlugin._write_multiple_frames`` writes it with
    ``optimize=False``, ``loop=0`` and one ``duration`` (no palette, no
    disposal): each frame quantised on its own, the first with the global
    palette, the others cropped to what changed and with a local palette."""

    def __init__(self, fp: BinaryIO, duration: int) -> None:
        self.fp, self.duration = fp, duration
        self.info = {"loop": 0, "duration": duration, "optimize": False}
        self.first: Image.Image | None = None  # frame 0 as RGB until another frame differs from it
        self.header: list[bytes] = []  # the global header, from frame 0
        self.last: Image.Image | None = None  # the last distinct frame, quantised
        self.bbox: tuple[int, int, int, int] | None = None  # what changed from the frame before it
        self.ms = 0  # its duration so far
        self.written = 0

    def add(self, im: Image.Image) -> None:
        rgb = im.convert("RGB")  # GIF has no alpha: the frames are opaque anyway
        frame = rgb.convert("P", palette=Image.Palette.ADAPTIVE)  # GifImagePlugin._normalize_mode for RGB
        # getheader sets the palette as the writer does (_normalize_palette), which the comparison needs
        header, _ = GifImagePlugin.getheader(frame, None, dict(self.info))
        if self.last is None:
            self.first, self.header = rgb, header
        else:
            bbox = _gif_bbox(self.last, frame)
            if not bbox:  # equal to the frame before: that one is shown longer
                self.ms += self.duration
                return
            self._write_last()
            self.first, self.bbox = None, bbox
        self.last, self.ms = frame, self.duration

    def _write_last(self) -> None:
        assert self.last is not None
        frame, params, offset = self.last, {"duration": self.ms}, (0, 0)
        if self.written == 0:
            self.fp.write(b"".join(self.header))
        else:
            assert self.bbox is not None
            params["include_color_table"] = True
            if self.bbox != (0, 0, *frame.size):
                frame = frame.crop(self.bbox)
            offset = self.bbox[:2]
        # what the public GifImagePlugin.getdata(frame, offset, **params) does, but into the file: getdata
        # collects the bytes in a class it makes per call, a reference cycle that keeps them until a full
        # collection (in the memory test +1 KiB a frame even with its list emptied, +10 KiB without)
        GifImagePlugin._write_frame_data(self.fp, frame, offset, params)
        self.written += 1

    def close(self) -> None:
        if self.first is not None:  # one distinct frame: pillow writes a still GIF, as long as them all
            self.first.save(self.fp, format="GIF", save_all=True, duration=self.ms, loop=0, optimize=False)
            return
        self._write_last()
        self.fp.write(b";")


def _gif_bbox(base: Image.Image, im: Image.Image) -> tuple[int, int, int, int] | None:
    """What differs between two quantised frames, as ``GifImagePlugin._getbbox``:
    palette indices if the palettes are equal, else colours."""
    assert base.palette is not None and im.palette is not None
    if bytes(base.palette.palette) != bytes(im.palette.palette):
        base, im = base.convert("RGBA"), im.convert("RGBA")
    return ImageChops.subtract_modulo(im, base).getbbox(alpha_only=False)


def _apng_delay(ms: int) -> Fraction:
    # fcTL's delay as PngImagePlugin writes it
    return Fraction(ms / 1000).limit_denominator(65535)


class _ApngFrames:
    """Animated PNG as ``PngImagePlugin._write_multiple_frames`` writes it with
    ``loop=0`` and one ``duration`` (disposal none, blend source): frame 0 in
    IDAT, the others cropped to what changed, in fdAT.  The frame count in acTL
    is written as 0 and set at the end (the ``.part`` file is seekable).

    The frames take frame 0's mode (pillow picks RGBA if any frame has it, but
    the header is written before the later frames are seen)."""

    def __init__(self, fp: BinaryIO, duration: int) -> None:
        self.fp, self.duration = fp, duration
        self.mode = ""
        self.last: Image.Image | None = None  # the last distinct frame
        self.bbox: tuple[int, int, int, int] | None = None  # what changed from the frame before it (None: all)
        self.ms = 0  # its duration so far
        self.written = 0
        self.seq = 0  # fcTL / fdAT sequence number
        self.actl = 0  # where acTL is

    def add(self, im: Image.Image) -> None:
        if self.last is None:
            self.mode, self.last, self.ms = im.mode, im, self.duration
            return
        im = _same_mode(im, self.mode)
        bbox = ImageChops.subtract_modulo(im.convert("RGBA"), self.last.convert("RGBA")).getbbox(alpha_only=False)
        if not bbox and _apng_delay(self.ms + self.duration).numerator <= 65535:
            self.ms += self.duration  # equal to the frame before: that one is shown longer
            return
        self._write_last()
        self.last, self.bbox, self.ms = im, bbox, self.duration

    def _write_last(self) -> None:
        assert self.last is not None
        fp, frame, bbox = self.fp, self.last, self.bbox or (0, 0, *self.last.size)
        if bbox != (0, 0, *frame.size):
            frame = frame.crop(bbox)
        delay = _apng_delay(self.ms)
        if delay.numerator > 65535:
            raise ValueError("cannot write duration")  # as pillow
        chunks = PngImagePlugin.getchunks(frame)  # (type, data, crc): IHDR … IDAT … IEND of this frame alone
        if self.written == 0:
            fp.write(b"\x89PNG\r\n\x1a\n")  # the PNG signature (getchunks leaves it out)
            for cid, data, crc in itertools.takewhile(lambda c: c[0] != b"IDAT", chunks):
                fp.write(struct.pack(">I", len(data)) + cid + data + crc)
            self.actl = fp.tell()
            PngImagePlugin.putchunk(fp, b"acTL", struct.pack(">II", 0, 0))  # frames (set in close), loop forever
        w, h = frame.size
        PngImagePlugin.putchunk(
            fp, b"fcTL", struct.pack(">IIIIIHHBB", self.seq, w, h, *bbox[:2], delay.numerator, delay.denominator, 0, 0)
        )
        self.seq += 1
        for cid, data, _ in chunks:
            if cid != b"IDAT":
                continue
            if self.written == 0:  # frame 0 is the PNG's own image
                PngImagePlugin.putchunk(fp, b"IDAT", data)
            else:
                PngImagePlugin.putchunk(fp, b"fdAT", struct.pack(">I", self.seq), data)
                self.seq += 1
        self.written += 1

    def close(self) -> None:
        assert self.last is not None
        if self.written == 0:  # one distinct frame: pillow writes a plain PNG
            self.last.save(self.fp, format="PNG", save_all=True, duration=self.ms, loop=0)
            return
        self._write_last()
        PngImagePlugin.putchunk(self.fp, b"IEND", b"")
        end = self.fp.tell()
        self.fp.seek(self.actl)
        PngImagePlugin.putchunk(self.fp, b"acTL", struct.pack(">II", self.written, 0))
        self.fp.seek(end)


def _same_mode(im: Image.Image, mode: str) -> Image.Image:
    """``im`` in ``mode``, if that loses nothing (RGB and opaque RGBA are one)."""
    if im.mode == mode:
        return im
    out = im.convert(mode)
    if out.convert(im.mode).tobytes() != im.tobytes():
        raise ValueError(f"frames differ in mode: frame 0 is {mode}, a later one {im.mode} that {mode} cannot hold")
    return out
