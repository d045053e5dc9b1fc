"""dfractal's tunables in dask's configuration: the defaults under the key
``dfractal`` come from ``dfractal.yaml`` beside this module (its comments
document each key), loaded when the package is imported, as distributed loads
``distributed.yaml``.  Read them with ``dask.config.get("dfractal.<key>")``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.config
import yaml

__all__ = ["DEFAULTS_PATH", "NOT_MAPPINGS"]

#: The YAML file of dfractal's configuration defaults.
DEFAULTS_PATH = Path(__file__).with_name("dfractal.yaml")


def _groups_not_mappings(tree: Any, prefix: str = "dfractal") -> dict[str, Any]:
    # the user's values of dfractal and its groups (explorer) that are no mapping: merging the
    # defaults replaces them silently, so they are kept here for settings.check() to refuse
    if tree is None:
        return {}
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    found: dict[str, Any] = {}
    for key, value in tree.items():
        if str(key).replace("_", "-") == "explorer":
            found.update(_groups_not_mappings(value, f"{prefix}.explorer"))
    return found


#: The user's settings of ``dfractal`` or ``dfractal.explorer`` that were no mapping (e.g. ``DASK_DFRACTAL=3``).
NOT_MAPPINGS: dict[str, Any] = _groups_not_mappings(dask.config.config.get("dfractal"))

dask.config.update_defaults(yaml.safe_load(DEFAULTS_PATH.read_text()))
