"""dfractal's settings: one schema for every key under dask's ``dfractal`` config.

The defaults live in ``dfractal.yaml`` only (loaded by :mod:`.config`); this
module says what each setting may be (its type, range and units) and is the
one place that reads them: :func:`get` returns a checked value, :func:`check`
checks them all.  The CLI calls :func:`check` before anything else, and so
does every public entry point that starts work (``render``, ``zoom``, ...),
so a bad value is one line naming the setting (and the environment variable
that set it) before any cluster starts or any store is touched.

A value from an environment variable reaches dask as Python's literal
(``DASK_DFRACTAL__STALL_SECONDS=600`` is the integer 600, ``abc`` the string
``'abc'``, ``1e400`` infinity): such values are refused here, not coerced.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask.config

from . import config

__all__ = ["SETTINGS", "Setting", "SettingError", "check", "get"]


class SettingError(ValueError):
    """A ``dfractal.*`` dask setting that is not one of its accepted values."""


@dataclass(frozen=True)
class Setting:
    """What one ``dfractal.<key>`` setting may be."""

    key: str
    #: ``int``, ``float`` (a finite number: integers too) or ``str`` (one of ``choices``)
    kind: type
    minimum: float | None = None
    maximum: float | None = None
    #: the least is excluded (``> minimum``), else included
    above: bool = False
    nullable: bool = False
    choices: tuple[str, ...] = ()
    units: str = ""

    def accepts(self) -> str:
        """The accepted values, in words."""
        if self.kind is str:
            return "one of " + ", ".join(self.choices)
        noun = "an integer" if self.kind is int else "a finite number"
        if self.units:
            noun += f" of {self.units}"
        low = f"> {_number(self.minimum)}" if self.above else f">= {_number(self.minimum)}"
        text = f"{noun} {low} and <= {_number(self.maximum)}"
        return text + (", or null" if self.nullable else "")

    def checked(self, value: Any) -> Any:
        """``value`` if it is accepted (an ``int`` setting's value as an int, a
        ``float`` one's as a float); :class:`SettingError` if not."""
        if value is None and self.nullable:
            return None
        if self.kind is str:
            if isinstance(value, str) and value in self.choices:
                return value
            raise self._error(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._error(value)
        if self.kind is int and not isinstance(value, int):
            raise self._error(value)
        if not math.isfinite(value):
            raise self._error(value)
        assert self.minimum is not None and self.maximum is not None
        if (value <= self.minimum if self.above else value < self.minimum) or value > self.maximum:
            raise self._error(value)
        return int(value) if self.kind is int else float(value)

    def _error(self, value: Any) -> SettingError:
        return SettingError(f"{describe(self.key)} must be {self.accepts()}, got {_short(value)}")


def _number(x: float | None) -> str:
    return f"{int(x)}" if x is not None and float(x).is_integer() else f"{x}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _env_name(key: str) -> str:
    return "DASK_DFRACTAL" + ("__" + key.upper().replace("-", "_").replace(".", "__") if key else "")


def describe(key: str) -> str:
    """``dask config dfractal.<key>`` (``dfractal`` itself for ``""``), and the
    environment variable that set it, if one did."""
    env = _env_name(key)
    return f"dask config dfractal{'.' + key if key else ''}" + (f" (set by {env})" if env in os.environ else "")


#: Every setting, by its key under ``dfractal`` (its default: ``dfractal.yaml``).
SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in (
        # a block's samples: at least one, at most 2**28 (a block of 2**28 samples is ~2 GiB of arrays)
        Setting("block-samples", int, 1, 2**28, units="samples"),
        Setting("cluster", str, choices=("threads", "processes")),
        # stall limits: above 0, at most a year (a timer's bound must stay a finite float)
        Setting("stall-seconds", float, 0, 365 * 86400, above=True, nullable=True, units="seconds"),
        Setting("min-stall-seconds", float, 0, 365 * 86400, above=True, units="seconds"),
        # renewed every third of it: a floor of 0.5 s keeps that to 6 writes a second at the most
        Setting("lease-seconds", float, 0.5, 365 * 86400, units="seconds"),
        Setting("explorer.coarse", int, 1, 64),
        Setting("explorer.cache-bytes", int, 0, 2**40, units="bytes"),
    )
}

#: The groups of settings (a mapping of settings, not a value).
_GROUPS = ("explorer",)


def _canonical(key: str) -> str:
    return key.replace("_", "-")


def get(key: str) -> Any:
    """The checked value of setting ``dfractal.<key>`` (e.g. ``"stall-seconds"``).

    Raises
    ------
    SettingError
        If the configured value is not accepted (the message names the setting).
    """
    setting = SETTINGS[key]  # a KeyError here is a bug: the key is ours
    assert config.DEFAULTS_PATH  # the defaults are loaded (dfractal.yaml)
    return setting.checked(dask.config.get(f"dfractal.{key}", None))


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in tree.items():
        key = prefix + _canonical(str(k))
        if key in _GROUPS:
            if not isinstance(v, Mapping):
                raise _not_a_mapping(key, v)
            out += _leaves(v, key + ".")
        else:
            out.append((key, v))
    return out


def _not_a_mapping(group: str, value: Any) -> SettingError:
    # dfractal itself ("") or one of its groups given a value that is no mapping: name the settings it holds
    inside = ", ".join(s.removeprefix(group + ".") for s in SETTINGS if not group or s.startswith(group + "."))
    return SettingError(f"{describe(group)} must be a mapping of settings ({inside}), got {_short(value)}")


def check() -> None:
    """Check every ``dfractal.*`` setting (and that there is no unknown one).

    Raises
    ------
    SettingError
        For the first setting that is not accepted, or a key that is no setting
        (a misspelt one would otherwise be ignored).
    """
    for key, value in config.NOT_MAPPINGS.items():  # (dask's merge of the defaults dropped them)
        raise _not_a_mapping(key.removeprefix("dfractal").lstrip("."), value)
    tree = dask.config.get("dfractal", None)
    if not isinstance(tree, Mapping):
        raise _not_a_mapping("", tree)
    for key, _ in _leaves(tree):
        if key not in SETTINGS:
            raise SettingError(f"{describe(key)} is no setting of dfractal (settings: {', '.join(SETTINGS)})")
    for key in SETTINGS:
        get(key)
