"""dfractal stores: Zarr groups of a render's (or zoom's) samples, their pyramid, and their records.

- :mod:`~dfractal_dask.store.layout`: the one module that names the store's keys, and which are its own;
- :mod:`~dfractal_dask.store.meta`: its attributes, parsed once (:class:`StoreMeta`);
- :mod:`~dfractal_dask.store.lease`: the one writer's lease;
- :mod:`~dfractal_dask.store.samples`: level 0: create, write blocks (workers), open, verify;
- :mod:`~dfractal_dask.store.levels`: the pyramid's levels as stored: records, checked reads;
- :mod:`~dfractal_dask.store.integrity`: the whole store verified, and repaired on resume.
"""

from .layout import LEASE_KEY, PYRAMID_GROUP, TILE, owns
from .lease import Lease, StoreBusy
from .meta import MetaError, StoreMeta
from .samples import *  # noqa: F403 - level 0's API is the package's
from .samples import __all__ as _samples_all

__all__ = ["LEASE_KEY", "PYRAMID_GROUP", "TILE", "Lease", "MetaError", "StoreBusy", "StoreMeta", "owns", *_samples_all]
