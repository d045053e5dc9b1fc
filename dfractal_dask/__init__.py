"""dfractal_dask: Dask-distributed fractal rendering, stored in Zarr, coloured any way.

>>> from dfractal_dask import View, render, colorize, save_png
>>> ds = render(View(width=320, height=240, supersample=2), store_path="m.zarr")  # doctest: +SKIP
>>> save_png(colorize(ds, "Hippi"), "m.png")  # doctest: +SKIP
"""

import gc as _gc

# Importing numba, xarray, pandas and distributed makes about a million objects, and the
# collector's full passes over them took 0.15-0.2 s of every `import dfractal_dask`
# (measured here: 0.84 s with collection, 0.67 s without): collection waits for the imports,
# and what they made is then frozen (gc.freeze: left out of later passes, as modules and
# their functions live as long as the interpreter), else the first pass after them walks
# all of it (0.09 s).
_collecting = _gc.isenabled()
_gc.disable()
try:
    from . import config  # noqa: F401 - first: dask config defaults under "dfractal" (dfractal.yaml)
    from ._version import __version__
    from .animation import save_animation
    from .colorize import color_picture, colorize, seed_colors
    from .deepzoom import write_deep_zoom, write_dzi
    from .fractals import Fractal
    from .graph import fractal_dataset
    from .palettes import SEED_PALETTES, seed_lut
    from .pipeline import RenderStats, render, zoom
    from .png import save_png
    from .pyramid import Level, build_pyramid, open_level, pyramid_levels, read_window
    from .store import StoreError, open_render, open_zoom
    from .view import View, zoom_views
finally:
    if _collecting:
        _gc.freeze()
        _gc.enable()


__all__ = [
    "__version__",
    "View",
    "Fractal",
    "render",
    "RenderStats",
    "zoom",
    "zoom_views",
    "open_zoom",
    "save_animation",
    "fractal_dataset",
    "open_render",
    "Level",
    "pyramid_levels",
    "open_level",
    "read_window",
    "build_pyramid",
    "StoreError",
    "colorize",
    "color_picture",
    "seed_colors",
    "save_png",
    "write_deep_zoom",
    "write_dzi",
    "seed_lut",
    "SEED_PALETTES",
]


def __getattr__(name: str) -> object:
    # the British spellings of colorize's names (deprecated): colorize.RENAMED
    if name in ("colour_picture", "seed_colours"):
        import importlib

        return getattr(importlib.import_module(".colorize", __name__), name)  # the module, not the function
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
