"""Checks of arguments that many public functions share (one wording for each).

A flag-like parameter is a real ``bool`` (or numpy's): a string such as
``"no"`` or ``"False"`` is truthy in Python, and ``overwrite="no"`` once
replaced a store.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_bool", "check_bools"]


def check_bool(name: str, value: object, *, none: bool = False) -> bool | None:
    """``value`` as a ``bool`` if it is one (``None`` too if ``none``), else a
    ``TypeError`` naming parameter ``name``."""
    if value is None and none:
        return None
    if not isinstance(value, bool | np.bool_):
        allowed = "True, False or None" if none else "True or False"
        raise TypeError(f"{name} must be {allowed}, got {value!r}")
    return bool(value)


def check_bools(**values: object) -> None:
    """:func:`check_bool` of each keyword argument (named by its keyword)."""
    for name, value in values.items():
        check_bool(name, value)
