"""The warnings dfractal_dask issues: each is a :class:`DfractalWarning`, so
a filter can tell them from a dependency's wherever their ``stacklevel``
points (the test suite makes them errors: see pyproject.toml)."""

from __future__ import annotations

import warnings

__all__ = ["DfractalWarning", "RenamedWarning", "warn_renamed"]


class DfractalWarning(Warning):
    """Base of every warning dfractal_dask issues."""


class RenamedWarning(DfractalWarning, DeprecationWarning):
    """An old spelling of a public name was used: it still works, under its new name."""


def warn_renamed(old: str, new: str) -> None:
    """Warn that ``old`` is renamed ``new``, at the line that used ``old``
    (the caller of the function that calls this one)."""
    warnings.warn(f"{old} is renamed {new}", RenamedWarning, stacklevel=3)
