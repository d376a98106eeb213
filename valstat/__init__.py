"""valstat: measure why small-validation-set CNN curves look the way they do.

Notebook use (no TensorFlow import): ``tables = valstat.load("reports/default")``,
``valstat.summarize(tables)``, ``valstat.plot(tables, "learning_rate", ax=ax)``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("valstat")
except PackageNotFoundError:   # a source tree that was never installed
    __version__ = "0+unknown"

_NOTEBOOK = ("load", "summarize", "plot", "figure_names", "Tables", "Meta")


def __getattr__(name):
    """The notebook API (valstat.notebook), imported on first use so the CLI stays light."""
    if name in _NOTEBOOK:
        from valstat import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'valstat' has no attribute {name!r}")
