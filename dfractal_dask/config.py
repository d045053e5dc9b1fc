"""dfractal's tunables in dask's configuration: the defaults under the key
``dfractal`` come from ``dfractal.yaml`` beside this module (its comments
document each key), loaded when the package is imported, as distributed loads
``distributed.yaml``.  Read them with ``dask.config.get("dfractal.<key>")``."""

from __future__ import annotations

from pathlib import Path

import dask.config
import yaml

__all__ = ["DEFAULTS_PATH"]

#: The YAML file of dfractal's configuration defaults.
DEFAULTS_PATH = Path(__file__).with_name("dfractal.yaml")

dask.config.update_defaults(yaml.safe_load(DEFAULTS_PATH.read_text()))
