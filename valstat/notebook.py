"""The notebook API: load a store, summarise it, draw its figures into your own Axes.

    import valstat
    tables = valstat.load("reports/default")     # runs, epochs, predictions, meta
    summary = valstat.summarize(tables)          # what `valstat stats --json` prints
    fig, ax = plt.subplots(); valstat.plot(tables, "learning_rate", ax=ax)

Nothing here imports TensorFlow or Keras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from valstat.errors import ValstatError


@dataclass(frozen=True)
class Meta:
    """What the store says about its sweep; `raw` holds every meta entry as stored."""

    experiment: str
    description: str
    config_hash: str
    arms: tuple
    settings: dict = field(repr=False)      # arm -> {data, training, schedule, model}
    dataset: dict = field(repr=False)
    raw: dict = field(repr=False)


@dataclass(frozen=True)
class Tables:
    """A store read at one moment: the tidy runs, epochs and predictions tables, and its meta."""

    runs: pd.DataFrame = field(repr=False)
    epochs: pd.DataFrame = field(repr=False)
    predictions: pd.DataFrame = field(repr=False)
    meta: Meta


def load(out_dir: str | Path) -> Tables:
    """Read the store in `out_dir` (a `valstat run --out` folder); the file is not modified."""
    from valstat.store import load_tables

    stored = load_tables(out_dir)
    raw = stored.meta
    meta = Meta(experiment=str(raw.get("experiment", "")),
                description=str(raw.get("description", "")),
                config_hash=str(raw.get("config_hash", "")),
                arms=tuple(raw.get("arms") or dict.fromkeys(stored.runs["arm"])),
                settings=dict(raw.get("arms_config") or {}),
                dataset=dict(raw.get("dataset") or {}), raw=raw)
    return Tables(runs=stored.runs, epochs=stored.epochs, predictions=stored.predictions,
                  meta=meta)


def summarize(tables: Tables):
    """The summary `valstat stats --json` prints: per-arm intervals, noise, comparisons."""
    from valstat.summary import summarize as summarize_tables

    if tables.runs.empty:
        raise ValstatError("the store holds no runs yet")
    return summarize_tables(tables.runs, tables.epochs, tables.predictions, tables.meta.raw)


def figure_names(tables: Tables) -> list[str]:
    """The figures this store's data allows, in report order (names for `plot`)."""
    return list(_builders(tables, "en"))


def plot(tables: Tables, name: str, ax=None, lang: str = "en"):
    """Draw the report figure `name` (see `figure_names`) and return its matplotlib Figure.

    ax: an Axes to draw into (a sequence of Axes for the figures with several panels);
    default: a new Figure sized for a thesis page.
    """
    from valstat.report import plots

    if name == "unstable_images":
        raise ValstatError("the unstable-images grid is drawn from the image files by `valstat "
                           "report` (report/figures/unstable_images.pdf, .svg, .png), not by plot")
    builders = _builders(tables, lang)
    if name not in builders:
        raise ValstatError(f"no figure {name!r} for this store (figures: {', '.join(builders)})")
    with plots.figure_context(lang):
        return builders[name][0](ax=ax)


def _builders(tables: Tables, lang: str) -> dict:
    from valstat.report.analysis import analyse
    from valstat.report.figures import figure_builders
    from valstat.report.text import Strings
    from valstat.store import StoreTables

    analysis = analyse(StoreTables(tables.runs, tables.epochs, tables.predictions,
                                   tables.meta.raw))
    return figure_builders(analysis, Strings(lang))
