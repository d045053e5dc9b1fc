"""``python -m dfractal_dask``: the ``dfractal`` command line."""

from .cli import run

if __name__ == "__main__":
    run()
