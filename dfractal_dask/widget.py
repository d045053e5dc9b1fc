"""The zoom explorer's former home, kept so ``from dfractal_dask.widget import
Explorer`` (notebooks, the README, ``dfractal explore``) still works: it lives
in :mod:`dfractal_dask.explorer` now."""

from .explorer import EXPLORER_MODES, Explorer, ExplorerSession, frame_tasks, serve

__all__ = ["EXPLORER_MODES", "Explorer", "ExplorerSession", "frame_tasks", "serve"]
