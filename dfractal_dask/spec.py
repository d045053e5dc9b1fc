"""What to render, checked once: :class:`RenderSpec`, and the checks it is made with.

A render or a zoom is a list of views (one for a render), an iteration limit,
a block size, a fractal, whether distance estimates are computed, and for each
view whether it is computed by perturbation.  :meth:`RenderSpec.make` and
:meth:`RenderSpec.make_zoom` resolve the defaults and refuse bad input
(``TypeError``/``ValueError`` naming the Python parameter) before anything is
built; :mod:`dfractal_dask.graph`, :mod:`dfractal_dask.store` and
:mod:`dfractal_dask.pipeline` then take the spec as it is.

This module knows views, fractals and the kernels' limits; nothing of dask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

from . import kernels, settings
from . import perturbation as _perturbation
from .checks import check_bool
from .fractals import Fractal
from .view import View, span_attr

__all__ = [
    "RENDER",
    "ZOOM",
    "Block",
    "RenderSpec",
    "blocks",
    "BLOCK_BYTES_PER_SAMPLE",
    "MAX_BLOCK_SAMPLES",
    "MAX_CHUNK_SAMPLES",
    "check_block_size",
    "check_chunk_rows",
    "check_exact",
    "check_fractal",
    "check_iters",
    "default_chunk_rows",
    "is_deep",
]

#: The two kinds of :class:`RenderSpec` (a zoom store's ``dfractal_kind`` attribute is :data:`ZOOM`).
RENDER: Final = "render"
ZOOM: Final = "zoom"


@dataclass(frozen=True)
class Block:
    """Sample rows ``row0 .. row1-1`` of a view: one task, one Zarr chunk."""

    index: int
    row0: int
    row1: int

    @property
    def nrows(self) -> int:
        return self.row1 - self.row0


def default_chunk_rows(view: View) -> int:
    """Rows per block: ~dask config ``dfractal.block-samples`` samples, a multiple of the
    supersampling factor (so a block colours into whole output rows), and at
    least 8 blocks when the picture is tall enough, so every worker gets work."""
    n = view.supersample
    rows = max(1, settings.get("block-samples") // view.sample_width)
    rows = min(rows, max(1, view.sample_height // 8))
    return max(n, math.ceil(rows / n) * n)


#: A block's arrays take at most this many bytes a sample: its counts (uint32
#: at most), norms and distances (float32); colouring and compressing it on
#: its worker take about as much again.
BLOCK_BYTES_PER_SAMPLE = 12

#: The most samples the smallest block of a view may hold (2**26: ~0.8 GB of
#: arrays, ~1.6 GB with its colouring, on each worker at once).  A block is at
#: least ``supersample`` sample rows (it colours into whole pixel rows), so a
#: view whose ``supersample**2 * width`` exceeds it (e.g. ``--width 200
#: --smoothness 1000``: 2e8 samples a pixel row) is refused
#: (:func:`check_block_size`) whatever its ``chunk_rows``.
MAX_BLOCK_SAMPLES = 2**26

#: The most samples a block of a given ``chunk_rows`` may hold (2**28, the
#: most the ``dfractal.block-samples`` setting asks for: ~3 GB of arrays).
MAX_CHUNK_SAMPLES = 2**28


def _size(samples: int) -> str:
    # a block's samples and their bytes, for a message
    gb = samples * BLOCK_BYTES_PER_SAMPLE / 1e9
    return f"{samples:,} samples ({samples * BLOCK_BYTES_PER_SAMPLE:,} bytes, {gb:,.1f} GB)"


def check_block_size(view: View) -> None:
    """Refuse (``ValueError``) a ``view`` whose smallest block, ``supersample``
    sample rows, holds more than :data:`MAX_BLOCK_SAMPLES` samples: it could
    not be computed in bounded memory, however it is cut."""
    smallest = view.supersample * view.sample_width
    if smallest > MAX_BLOCK_SAMPLES:
        raise ValueError(
            f"a block of a {view.width}-pixel-wide view at supersample (--smoothness) {view.supersample} is at "
            f"least {view.supersample} sample rows of {view.sample_width:,}: {_size(smallest)}, more than the "
            f"{_size(MAX_BLOCK_SAMPLES)} a block may hold; use a smaller supersample or width"
        )


def check_chunk_rows(view: View, chunk_rows: int | None) -> int:
    """``chunk_rows`` checked for ``view`` (an integer above 0, a multiple of
    its supersampling, making blocks of at most :data:`MAX_CHUNK_SAMPLES`), or
    :func:`default_chunk_rows` for ``None``; a view whose smallest block is
    too large is refused either way (:func:`check_block_size`)."""
    check_block_size(view)
    if chunk_rows is None:
        return default_chunk_rows(view)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int | np.integer):
        raise TypeError(f"chunk_rows must be an integer, got {chunk_rows!r}")
    if chunk_rows <= 0:
        raise ValueError(f"chunk_rows must be > 0, got {chunk_rows}")
    if chunk_rows % view.supersample:
        raise ValueError(
            f"chunk_rows ({chunk_rows}) must be a multiple of the supersampling factor "
            f"({view.supersample}) so each block colours into whole pixel rows"
        )
    block = min(int(chunk_rows), view.sample_height) * view.sample_width
    if block > MAX_CHUNK_SAMPLES:
        most = MAX_CHUNK_SAMPLES // view.sample_width // view.supersample * view.supersample
        raise ValueError(
            f"chunk_rows ({chunk_rows}) makes blocks of {_size(block)}, more than {_size(MAX_CHUNK_SAMPLES)}: "
            f"at most {most} rows of {view.sample_width:,} samples"
        )
    return int(chunk_rows)


def blocks(view: View, chunk_rows: int | None = None) -> list[Block]:
    """Cut the sample rows of ``view`` into blocks of ``chunk_rows`` rows."""
    rows = check_chunk_rows(view, chunk_rows)
    h = view.sample_height
    return [Block(i, r0, min(r0 + rows, h)) for i, r0 in enumerate(range(0, h, rows))]


def check_iters(iters: int) -> int:
    """Check an iteration limit (an integer from 1 to 2**32 - 2); return it as int."""
    if isinstance(iters, bool) or not isinstance(iters, int | np.integer):
        raise TypeError(f"iters must be an integer, got {iters!r}")
    if not 1 <= iters <= np.iinfo(np.uint32).max - 1:
        raise ValueError(f"iters must be between 1 and {np.iinfo(np.uint32).max - 1}, got {iters}")
    return int(iters)


def check_fractal(fractal: Fractal | None) -> Fractal:
    """``fractal``, or the Mandelbrot set for ``None``; a ``TypeError`` for anything else."""
    if fractal is None:
        return Fractal()
    if not isinstance(fractal, Fractal):
        raise TypeError(f"fractal must be a Fractal (e.g. Fractal('julia', c=-0.8+0.156j)), got {fractal!r}")
    return fractal


def check_exact(exact: bool) -> bool:
    """``exact`` (render deep views without BLA) checked: a bool, else a ``TypeError``."""
    return bool(check_bool("exact", exact))


def is_deep(view: View, fractal: Fractal | None = None, distance: bool = False, deep: bool | None = None) -> bool:
    """Whether ``view`` is rendered by perturbation: ``deep`` if given, else
    :attr:`dfractal_dask.view.View.deep`.  A deep render must be of the
    Mandelbrot set, without distance estimation (``ValueError`` otherwise)."""
    check_bool("perturbation", deep, none=True)
    check_bool("distance", distance)
    if deep is False and view.deep:
        raise ValueError(
            f"a view of span {view.span:g} at ({float(view.xpos):g}, {float(view.ypos):g}) is too deep for float64 "
            "(its samples would collapse into a few values): it needs perturbation, which was turned off"
        )
    deep = view.deep if deep is None else deep
    if deep:
        _perturbation.check_deep_fractal(fractal)
        if distance:
            raise ValueError("distance estimation is not available for deep (perturbation) renders")
    return deep


@dataclass(frozen=True)
class RenderSpec:
    """One render (``kind`` :data:`RENDER`, one view) or zoom (:data:`ZOOM`,
    one view a frame), its defaults resolved and checked.

    Make one with :meth:`make` or :meth:`make_zoom`, which check every
    argument; the constructor takes the resolved values as they are.

    Attributes
    ----------
    kind
        :data:`RENDER` or :data:`ZOOM`.
    views
        The views: one for a render, one a frame for a zoom (all of one size,
        supersampling and centre).
    iters
        Iteration limit per sample.
    chunk_rows
        Sample rows per block, resolved (:func:`check_chunk_rows`; it may
        exceed the picture's height: see :attr:`block_rows`).
    fractal
        The family (the Mandelbrot set by default).
    distance
        Whether distance estimates are computed (renders only).
    deep
        For each view, whether it is computed by perturbation (:func:`is_deep`).
    exact
        Whether deep views iterate every step (no bilinear approximation,
        :mod:`dfractal_dask.bla`).
    """

    kind: Literal["render", "zoom"]
    views: tuple[View, ...]
    iters: int
    chunk_rows: int
    fractal: Fractal
    distance: bool
    deep: tuple[bool, ...]
    exact: bool = False

    @classmethod
    def make(
        cls,
        view: View,
        iters: int,
        chunk_rows: int | None = None,
        fractal: Fractal | None = None,
        distance: bool = False,
        perturbation: bool | None = None,
        exact: bool = False,
    ) -> RenderSpec:
        """The spec of a render of ``view`` (arguments as for
        :func:`dfractal_dask.graph.fractal_dataset`), every one checked here."""
        if not isinstance(view, View):
            raise TypeError(f"view must be a View, got {type(view).__name__}")
        iters = check_iters(iters)
        rows = check_chunk_rows(view, chunk_rows)
        fractal = check_fractal(fractal)
        if distance:
            kernels.check_distance_fractal(fractal)
        deep = is_deep(view, fractal, bool(distance), perturbation)
        return cls(RENDER, (view,), iters, rows, fractal, bool(distance), (deep,), check_exact(exact))

    @classmethod
    def make_zoom(
        cls,
        views: list[View],
        iters: int,
        chunk_rows: int | None = None,
        fractal: Fractal | None = None,
        perturbation: bool | None = None,
        exact: bool = False,
    ) -> RenderSpec:
        """The spec of a zoom through ``views`` (arguments as for
        :func:`dfractal_dask.graph.zoom_dataset`), every one checked here:
        each frame decides for itself whether it is deep unless ``perturbation`` is given."""
        if not views:
            raise ValueError("a zoom needs at least one view")
        first = views[0]
        for v in views:
            if not isinstance(v, View):
                raise TypeError(f"views must be Views, got {type(v).__name__}")
            if (v.width, v.height, v.supersample, v.centre) != (
                first.width,
                first.height,
                first.supersample,
                first.centre,
            ):
                raise ValueError("the views of a zoom must share their size, supersampling and centre")
        iters = check_iters(iters)
        fractal = check_fractal(fractal)
        rows = check_chunk_rows(first, chunk_rows)
        deep = tuple(is_deep(v, fractal, False, perturbation) for v in views)
        return cls(ZOOM, tuple(views), iters, rows, fractal, False, deep, check_exact(exact))

    @property
    def view(self) -> View:
        """The (first) view: a frame's size, supersampling and centre."""
        return self.views[0]

    @property
    def block_rows(self) -> int:
        """Rows of the first (tallest) block: :attr:`chunk_rows`, at most the picture's height."""
        return min(self.chunk_rows, self.view.sample_height)

    def blocks(self) -> list[Block]:
        """The row blocks of every frame (one task, one Zarr chunk each)."""
        return blocks(self.view, self.chunk_rows)

    @property
    def n_blocks(self) -> int:
        """Blocks a frame."""
        return len(range(0, self.view.sample_height, self.chunk_rows))

    def attrs(self) -> dict[str, Any]:
        """The Dataset attributes of the render or zoom (before a store adds its own)."""
        attrs: dict[str, Any] = dict(self.fractal.to_attrs())
        if self.kind == RENDER:
            attrs.update(distance=bool(self.distance), perturbation=bool(self.deep[0]))
        attrs.update(iters=self.iters, chunk_rows=self.block_rows, **self.view.to_attrs())
        if self.kind == ZOOM:
            attrs.update(frames=len(self.views), to_span=span_attr(self.views[-1].span))
        if any(self.deep):  # (a render without deep views has no BLA to tell)
            attrs.update(bla=not self.exact)
        return attrs
