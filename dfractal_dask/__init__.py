"""dfractal_dask: Dask-distributed fractal rendering, stored in Zarr, coloured any way.

>>> from dfractal_dask import View, render, colorize, save_png
>>> ds = render(View(width=320, height=240, supersample=2), store_path="m.zarr")  # doctest: +SKIP
>>> save_png(colorize(ds, "Hippi"), "m.png")  # doctest: +SKIP

The public names are loaded from their modules when first used (PEP 562):
``import dfractal_dask`` itself imports none of numba, xarray or distributed
(a second of start-up that ``dfractal --help`` or a Ctrl-C during it need
not wait for, and that a module reading one name need not pay for all).
"""

import gc as _gc
import importlib as _importlib
import sys as _sys
from types import ModuleType as _ModuleType

#: Each public name and the module that defines it (loaded on first use: :func:`__getattr__`).
_ORIGINS = {
    "__version__": "._version",
    "save_animation": ".animation",
    "color_picture": ".colorize",
    "colorize": ".colorize",
    "seed_colors": ".colorize",
    "write_deep_zoom": ".deepzoom",
    "write_dzi": ".deepzoom",
    "Fractal": ".fractals",
    "fractal_dataset": ".graph",
    "SEED_PALETTES": ".palettes",
    "seed_lut": ".palettes",
    "RenderStats": ".pipeline",
    "render": ".pipeline",
    "zoom": ".pipeline",
    "save_png": ".png",
    "Level": ".pyramid",
    "build_pyramid": ".pyramid",
    "open_level": ".pyramid",
    "pyramid_levels": ".pyramid",
    "read_window": ".pyramid",
    "StoreError": ".store",
    "open_render": ".store",
    "open_zoom": ".store",
    "View": ".view",
    "zoom_views": ".view",
}

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
    origin = _ORIGINS.get(name)
    if origin is not None:
        # Importing numba, xarray, pandas and distributed makes about a million objects: the
        # collector's full passes over them took 0.15-0.2 s of the first use, so it waits for them
        collecting = _gc.isenabled()
        _gc.disable()
        try:
            if origin != "._version":
                # first: dask config defaults under "dfractal" (dfractal.yaml; the modules that
                # read them import it too, through .settings)
                _importlib.import_module(".config", __name__)
            value = getattr(_importlib.import_module(origin, __name__), name)
        finally:
            if collecting:
                _gc.enable()
        globals()[name] = value  # once: later uses find it without this function
        return value
    # the British spellings of colorize's names (deprecated): colorize.RENAMED
    if name in ("colour_picture", "seed_colours"):
        return getattr(_importlib.import_module(".colorize", __name__), name)  # the module, not the function
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(_ModuleType):
    """This package's module: the import system binds each submodule it loads to
    the package's attribute of its name, and the module ``colorize`` would
    then hide the function ``colorize`` (the public name) from
    ``dfractal_dask.colorize`` and ``from dfractal_dask import colorize``."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _ORIGINS and isinstance(value, _ModuleType):
            return  # the submodule stays in sys.modules; the public name is loaded by __getattr__
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
