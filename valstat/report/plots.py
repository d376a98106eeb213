"""Figures (seaborn on matplotlib) drawn from the tidy results of `valstat.stats`.

Every function takes ready-made tables (no statistics are computed here), a `labels` mapping with
the figure text of one language (valstat/report/<lang>.toml, table [figures]) and returns a
matplotlib Figure sized for a thesis page (16 cm wide). `save_figure` writes each figure once as
PDF (TrueType fonts embedded, pdf.fonttype 42), SVG (text as paths) and 300-dpi PNG.

Epochs are shown as stored: counted from 0, as Keras callbacks and CSVLogger count them (the
same numbers `valstat stats` and `valstat diagnose` print).

Array/table shapes (one row per ...):
  epochs:  run_id, arm, epoch, val_accuracy, val_loss, learning_rate   (run x epoch)
  bands:   arm, epoch, estimate, low, high (design, scope)              (arm x epoch)
  changes: valstat.stats.curve_changes output                          (epoch)
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import (FixedLocator, FuncFormatter, LogFormatterSciNotation,
                               MaxNLocator, MultipleLocator, NullLocator)

from valstat.fonts import font_family
from valstat.report.text import finite
from valstat.results import LargestDrop

CM = 1 / 2.54
WIDTH = 16 * CM          # thesis text width
GREY = "#9a9a9a"
LATTICE_GREY = "#d9d9d9"
CORRECT = "#2b6ca3"      # per-image map: correct (blue)
WRONG = "#f4d6a0"        # per-image map: wrong (light orange)
FORMATS = ("pdf", "svg", "png")


# --------------------------------------------------------------------------- style and saving

def style(lang: str = "en") -> dict:
    """rcParams for every valstat figure: seaborn 'ticks' + 'paper' at 9 pt, fonts per language.

    pdf.fonttype 42 embeds TrueType (never Type 3); svg.fonttype 'path' draws SVG text as
    outlines so the inline figures need no font on the reader's machine.
    """
    rc = {}
    rc.update(sns.axes_style("ticks"))
    rc.update(sns.plotting_context("paper", rc={
        "font.size": 9, "axes.labelsize": 9, "axes.titlesize": 9.5, "xtick.labelsize": 8,
        "ytick.labelsize": 8, "legend.fontsize": 8, "legend.title_fontsize": 8.5,
        "lines.linewidth": 1.4}))
    rc.update({
        "font.family": font_family(lang),
        "axes.unicode_minus": True,
        "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "path",
        "axes.spines.top": False, "axes.spines.right": False,
        "axes.titlelocation": "left", "axes.titleweight": "normal",
        "legend.frameon": False, "figure.dpi": 100, "savefig.dpi": 300,
        "savefig.bbox": None, "figure.constrained_layout.h_pad": 0.04,
        "figure.constrained_layout.w_pad": 0.04,
        "svg.hashsalt": "valstat", "pdf.compression": 6,
        "path.simplify": True,
    })
    return rc


@contextlib.contextmanager
def figure_context(lang: str = "en"):
    """Apply valstat's figure style inside the block (restores rcParams afterwards)."""
    with matplotlib.rc_context(style(lang)):
        yield


@dataclass
class SavedFigure:
    """One figure written in the three formats; `svg` is the SVG text (for inlining)."""

    stem: str
    paths: dict
    svg: str


def _freeze_layout(fig: Figure) -> None:
    """Keep the layout the first save computed for the other formats.

    With any layout engine set (even the placeholder that set_layout_engine("none") leaves),
    every savefig draws the whole figure once more just to lay it out; the positions are
    already final after the first save, so drop the engine. matplotlib has no public call
    that removes it, hence the attribute (guarded: if it changes, we only lose speed).
    """
    fig.set_layout_engine("none")
    if hasattr(fig, "_layout_engine"):
        fig._layout_engine = None


def save_figure(fig: Figure, dest: str | Path, stem: str, formats=FORMATS) -> SavedFigure:
    """Write `fig` as dest/stem.{pdf,svg,png} (each format once) and close it."""
    dest = Path(dest)
    paths = {}
    metadata = {"pdf": {"Creator": "valstat", "Producer": "valstat (matplotlib)",
                        "CreationDate": None},
                "svg": {"Date": None}, "png": {"Software": "valstat"}}
    try:
        for i, fmt in enumerate(formats):
            path = dest / f"{stem}.{fmt}"
            fig.savefig(path, format=fmt, metadata=metadata.get(fmt))
            paths[fmt] = path
            if i == 0:
                _freeze_layout(fig)
    finally:
        fig.clear()
    svg = paths["svg"].read_text(encoding="utf-8") if "svg" in paths else ""
    return SavedFigure(stem=stem, paths=paths, svg=svg)


def arm_colors(arms) -> dict:
    """One colour per arm, stable across every figure (seaborn 'colorblind' palette order)."""
    arms = list(arms)
    palette = sns.color_palette("colorblind", max(len(arms), 1))
    if len(arms) > len(palette):
        palette = sns.color_palette("husl", len(arms))
    return {arm: matplotlib.colors.to_hex(palette[i]) for i, arm in enumerate(arms)}


# --------------------------------------------------------------------------- helpers

def _shown(epoch):
    """Stored epoch -> the x value drawn (the same number: epochs are shown as logged)."""
    return np.asarray(epoch)


def _percent_axis(ax, axis="y"):
    fmt = FuncFormatter(lambda v, _: f"{v * 100:.0f}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


def _lattice_lines(ax, n, axis="y", lo=0.0, hi=1.0):
    """Light lines at every k/n (only when they are at least ~1 mm apart)."""
    if not n or n > 60:
        return
    values = np.arange(0, n + 1) / n
    values = values[(values >= lo - 1e-9) & (values <= hi + 1e-9)]
    for v in values:
        if axis == "y":
            ax.axhline(v, color=LATTICE_GREY, lw=0.5, zorder=0)
        else:
            ax.axvline(v, color=LATTICE_GREY, lw=0.5, zorder=0)


def _epoch_axis(ax, max_epoch):
    ax.set_xlim(-0.5, max_epoch + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8, min_n_ticks=3))


def _segments(frame, x, y, by="run_id"):
    """(n_lines, points, 2) list of arrays for a LineCollection, one line per `by` value."""
    return [np.column_stack([g[x].to_numpy(float), g[y].to_numpy(float)])
            for _, g in frame.sort_values([by, x]).groupby(by, sort=False)]


def _steps_mid(points):
    """(k, 2) points -> a step line holding each value from x-0.5 to x+0.5 (rate per epoch)."""
    x, y = points[:, 0], points[:, 1]
    xs = np.column_stack([x - 0.5, x + 0.5]).ravel()
    return np.column_stack([xs, np.repeat(y, 2)])


def _subplots(nrows=1, ncols=1, *, figsize, layout="constrained", ax=None, **kwargs):
    """Figure and axes without pyplot: no global figure registry, no backend switch (the
    caller's matplotlib backend is left alone; saving uses the format's own canvas).

    ax: the caller's Axes to draw into instead (one Axes, or nrows x ncols of them in any
    nesting); the figure returned is theirs."""
    if ax is None:
        fig = Figure(figsize=figsize, layout=layout)
        return fig, fig.subplots(nrows, ncols, **kwargs)
    given = np.asarray(ax, dtype=object).ravel()
    if len(given) != nrows * ncols:
        raise ValueError(f"this figure draws {nrows * ncols} panel(s); ax= holds {len(given)}")
    if kwargs.get("squeeze", True) and len(given) == 1:
        return given[0].figure, given[0]
    grid = given.reshape(nrows, ncols)
    return given[0].figure, grid if not kwargs.get("squeeze", True) else np.squeeze(grid)


def _facet_axes(n_panels, height_cm, max_cols=3, sharey=True, ax=None):
    cols = min(max_cols, max(1, n_panels))
    rows = int(np.ceil(n_panels / cols))
    if ax is not None:
        rows, cols = 1, n_panels
    fig, axes = _subplots(rows, cols, figsize=(WIDTH, height_cm * CM * rows),
                          sharey=sharey, squeeze=False, layout="constrained", ax=ax)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n_panels])


# --------------------------------------------------------------------------- figures
# Every plot_* function takes ax=: an Axes (a sequence of Axes for figures with several panels)
# to draw into, e.g. in a notebook; without it the figure is a new one sized for a thesis page.

def plot_val_accuracy_runs(epochs: pd.DataFrame, bands: pd.DataFrame, val_sizes: dict,
                           colors: dict, labels: dict, ax=None) -> Figure:
    """Every run's validation accuracy (thin), the arm mean and its 95% band, k/n lattice lines.

    epochs: run_id, arm, epoch, val_accuracy; bands: arm, epoch, estimate, low, high;
    val_sizes: {arm: n} for the lattice lines. One panel per arm.
    """
    arms = [a for a in colors if a in set(epochs["arm"])]
    fig, axes = _facet_axes(len(arms), 6.2, ax=ax)
    max_epoch = int(epochs["epoch"].max())
    for ax, arm in zip(axes, arms):
        runs = epochs[epochs["arm"] == arm].assign(x=lambda d: _shown(d["epoch"]))
        _lattice_lines(ax, val_sizes.get(arm))
        ax.add_collection(LineCollection(_segments(runs, "x", "val_accuracy"), colors=GREY,
                                         linewidths=0.6, alpha=0.45, zorder=1))
        band = bands[bands["arm"] == arm].sort_values("epoch")
        x = _shown(band["epoch"])
        ax.fill_between(x, band["low"].clip(0, 1), band["high"].clip(0, 1), color=colors[arm],
                        alpha=0.28, lw=0, zorder=2)
        ax.plot(x, band["estimate"], color=colors[arm], lw=1.8, zorder=3)
        ax.set_title(labels["arm_title"].format(arm=arm, runs=runs["run_id"].nunique(),
                                                n=val_sizes.get(arm, "?")))
        _epoch_axis(ax, max_epoch)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(labels["epoch"])
    axes[0].set_ylabel(labels["val_accuracy_pct"])
    _percent_axis(axes[0])
    handles = [Line2D([], [], color=GREY, lw=0.8, label=labels["one_run"]),
               Line2D([], [], color="black", lw=1.8, label=labels["mean_band"]),
               Line2D([], [], color=LATTICE_GREY, lw=1.5, label=labels["lattice"])]
    fig.legend(handles=handles, loc="outside lower center", ncols=3)
    return fig


def plot_run_band(changes: pd.DataFrame, drop: LargestDrop | None, note: str, run_label: str,
                  color: str, labels: dict, ax=None) -> Figure:
    """One run's validation accuracy with its per-epoch 95% Wilson band; the largest drop marked.

    changes: curve_changes output (epoch, val_accuracy, n, low, high ...); drop: a
    valstat.results.LargestDrop or None; note: the text tied to the drop by a thin line, placed
    clear of the curve and, where it can be, of the band (figures.drop_note: images lost and the
    scan-adjusted p the verdict uses, e.g. "−4 of 30 images, adjusted p = 0.85 (largest of 14 moves)").
    """
    fig, ax = _subplots(figsize=(WIDTH, 6.8 * CM), layout="constrained", ax=ax)
    n = int(changes["n"].iloc[0])
    x = _shown(changes["epoch"])
    _lattice_lines(ax, n)
    ax.fill_between(x, changes["low"], changes["high"], color=color, alpha=0.22, lw=0,
                    label=labels["wilson_band"])
    ax.plot(x, changes["val_accuracy"], color=color, marker="o", ms=3.2, lw=1.4,
            label=labels["val_accuracy"], zorder=3)
    if drop is not None:
        x0, x1 = drop.from_epoch, drop.to_epoch
        y0 = float(changes.loc[changes["epoch"] == x0, "val_accuracy"].iloc[0])
        y1 = float(changes.loc[changes["epoch"] == x1, "val_accuracy"].iloc[0])
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.0,
                                "shrinkA": 3, "shrinkB": 3, "mutation_scale": 9}, zorder=4)
    if run_label:
        ax.set_title(run_label)
    ax.set_ylim(-0.02, 1.02)
    _epoch_axis(ax, int(changes["epoch"].max()))
    ax.set_xlabel(labels["epoch"])
    ax.set_ylabel(labels["val_accuracy_pct"])
    _percent_axis(ax)
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, borderaxespad=0.2)
    if drop is not None:
        below = (y0 + y1) / 2 > 0.5
        span = float(x.max() - x.min()) or 1.0
        frac = (x1 - float(x.min())) / span
        curve, low, high = (np.column_stack([x, changes[column].to_numpy(dtype=float)])
                            for column in ("val_accuracy", "low", "high"))
        _annotate_clear(ax, note, ((x0 + x1) / 2, (y0 + y1) / 2), curve,
                        np.vstack([_along(low), _along(high)]),
                        side=-1 if below else 1,
                        align="left" if frac < 0.25 else "right" if frac > 0.75 else "center",
                        fontsize=8, zorder=5,
                        bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": GREY, "lw": 0.6},
                        arrowprops={"arrowstyle": "-", "color": GREY, "lw": 0.6})
    return fig


def _along(points: np.ndarray, per_segment: int = 12) -> np.ndarray:
    """Points (k, 2) and evenly spaced points on the segments between them, shape
    ((k - 1) * per_segment + 1, 2): a polyline as points to keep clear of."""
    if len(points) < 2:
        return points
    steps = np.linspace(0, 1, per_segment, endpoint=False)
    inner = points[:-1, None, :] + steps[None, :, None] * np.diff(points, axis=0)[:, None, :]
    return np.vstack([inner.reshape(-1, 2), points[-1:]])


def _crossings(start, end, line: np.ndarray) -> int:
    """How many segments of the polyline `line` (k, 2) the segment start -> end crosses, not
    counting a touch at `end` (display coordinates)."""
    a, b = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    p, q = line[:-1], line[1:]

    def cross(u, v):
        return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]

    r, d = b - a, q - p
    denom = cross(r, d)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = cross(p - a, d) / denom              # along start -> end
        u = cross(p - a, r) / denom              # along each segment
    hits = (denom != 0) & (t >= 0) & (t < 1 - 1e-6) & (u >= 0) & (u <= 1)
    return int(hits.sum())


def _two_lines(note: str) -> str | None:
    """`note` broken in two after a comma or before a parenthesis (", ", " (", "，", "（"),
    at the place nearest its middle; None if it has none."""
    cuts = [(m.start() + 1, m.end()) for m in re.finditer(r", |，", note)]
    cuts += [(m.start(), m.end() - 1) for m in re.finditer(r" \(|（", note)]
    if not cuts:
        return None
    start, end = min(cuts, key=lambda cut: abs(cut[0] - len(note) / 2))
    return note[:start] + "\n" + note[end:]


def _annotate_clear(ax, note: str, xy, line: np.ndarray, rather_avoid: np.ndarray,
                    side: int, align: str, **style):
    """ax.annotate(note) pointing at `xy` (data), its text box inside the axes and covering
    no part of the polyline `line` (k, 2), its leader crossing as little of `line` as it can,
    and, where it can, covering none of the points `rather_avoid` (k, 2) (data coordinates).

    First choice: 40 points above (`side` 1) or below (-1) `xy`, aligned `align`. If that box
    covers the line or its leader crosses it, the best place among a grid over the axes (left,
    centre or right; 48 heights), the note on one line or on two, whose box is clear of the
    line: fewest crossings, then clear of `rather_avoid`, then one line, then nearest to the
    first choice; the first choice when no box is clear. The figure is laid out first, so that
    positions on the page are final.
    """
    fig = ax.figure
    fig.draw_without_rendering()
    margin = 4 * fig.dpi / 72                      # the box's padding and a marker's radius
    frame = ax.get_window_extent()
    path = ax.transData.transform(line)
    points, rather = ax.transData.transform(_along(line)), ax.transData.transform(rather_avoid)
    target = ax.transData.transform(xy)
    text_style = {key: value for key, value in style.items() if key != "arrowprops"}
    first = {"text": note, "xytext": (0, side * 40), "textcoords": "offset points",
             "ha": align, "va": "bottom" if side > 0 else "top"}
    grid = [{"text": text, "xytext": (fx, fy), "textcoords": "axes fraction", "ha": ha,
             "va": "center"}
            for text in (note, _two_lines(note)) if text is not None
            for fx, ha in ((0.01, "left"), (0.5, "center"), (0.99, "right"))
            for fy in np.linspace(0.03, 0.97, 48)]

    def box_of(place):
        probe = ax.annotate(xy=xy, **place, **text_style)
        box = probe.get_window_extent().padded(margin)      # the text alone: no arrow yet
        probe.remove()
        inside = (frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0
                  and box.y1 <= frame.y1)
        return box if inside and not box.count_contains(points) else None

    def leader_crossings(box):
        return _crossings(((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2), target, path)

    chosen = first
    first_box = box_of(first)
    if first_box is None or leader_crossings(first_box):
        wanted = target + (0, side * 40 * fig.dpi / 72)
        clear = [(leader_crossings(box), bool(box.count_contains(rather)),
                  grid[index]["text"] != note,
                  float(np.hypot(*(np.array([box.x0 + box.x1, box.y0 + box.y1]) / 2 - wanted))),
                  index) for index, box in enumerate(map(box_of, grid)) if box is not None]
        if clear:
            chosen = grid[min(clear)[-1]]
    annotation = ax.annotate(xy=xy, **chosen, **style)
    annotation.set_in_layout(False)
    return annotation


def _dot_stack(values, center, width, step):
    """x offsets that stack equal values side by side (a dot histogram on the lattice).

    values: shape (k,), rounded to the lattice; returns x positions, shape (k,), growing
    leftwards from `center` so that the interval bars can sit to the right.
    """
    values = np.asarray(values, dtype=float)
    keys = np.round(values, 6)
    order = np.argsort(keys, kind="stable")
    rank = np.empty(len(values), dtype=float)
    sorted_keys = keys[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_keys)) + 1]
    counts = np.diff(np.r_[starts, len(values)])
    within = np.arange(len(values)) - np.repeat(starts, counts)
    rank[order] = within
    biggest = counts.max() if len(counts) else 1
    dx = min(step, width / max(biggest, 1))
    return center - rank * dx, dx


def plot_accuracy_distribution(per_run: pd.DataFrame, intervals: dict, val_sizes: dict,
                               colors: dict, labels: dict, ax=None) -> Figure:
    """Final and best validation accuracy of every run, stacked on the k/n lattice, per arm.

    per_run: arm, final, best (fractions); intervals: {arm: {"final": Interval | None, "best":
    Interval | None}} (valstat.results) with estimate, low, high (CI of the mean) and pi_low,
    pi_high (where one new run may land).
    Dots with equal values sit side by side (a dot histogram); the mean (diamond), its CI
    (thick bar) and the prediction interval (dotted) stand to the right of each arm's dots.
    """
    arms = [a for a in colors if a in set(per_run["arm"])]
    fig, axes = _subplots(1, 2, figsize=(WIDTH, 7.2 * CM), sharey=True,
                          layout="constrained", ax=ax)
    n_min = min((val_sizes.get(a) or 0 for a in arms), default=0) or None
    counts = per_run.groupby("arm").size()
    dot = 3.6 if counts.max() <= 30 else 2.6 if counts.max() <= 80 else 1.9
    for ax, column, title in zip(axes, ("final", "best"), (labels["final"], labels["best"])):
        _lattice_lines(ax, n_min)
        for i, arm in enumerate(arms):
            values = per_run.loc[per_run["arm"] == arm, column].dropna().to_numpy(float)
            if values.size:
                xs, _ = _dot_stack(values, i - 0.02, 0.55, 0.05)
                ax.plot(xs, values, ls="", marker="o", ms=dot, color=colors[arm], alpha=0.85,
                        mew=0, zorder=2)
            info = intervals[arm][column]
            if not info or not finite(info.estimate):
                continue
            xs = i + 0.12
            if finite(info.pi_low) and finite(info.pi_high):
                ax.vlines(xs + 0.1, max(info.pi_low, 0.0), min(info.pi_high, 1.0),
                          color=colors[arm], lw=1.1, linestyles=(0, (1, 1.5)), zorder=3)
            if finite(info.low) and finite(info.high):
                ax.vlines(xs, max(info.low, 0.0), min(info.high, 1.0), color=colors[arm],
                          lw=3.0, zorder=3)
            ax.plot([xs], [info.estimate], marker="D", ms=4.5, color="white",
                    mec=colors[arm], mew=1.3, zorder=4)
        ax.set_title(title)
        ax.set_xlabel(labels["arm"])
        ax.set_xticks(np.arange(len(arms)) - 0.1, arms)
        ax.set_xlim(-0.75, len(arms) - 0.55)
        ax.set_ylim(-0.02, 1.02)
        ax.tick_params(axis="x", length=0)
        if len(arms) > 3:
            ax.tick_params(axis="x", labelrotation=30)
            for tick in ax.get_xticklabels():
                tick.set_ha("right")
    axes[0].set_ylabel(labels["val_accuracy_pct"])
    _percent_axis(axes[0])
    handles = [Line2D([], [], ls="", marker="o", ms=4, color=GREY, label=labels["one_run_dot"]),
               Line2D([], [], ls="", marker="D", ms=4.5, mfc="white", mec="black",
                      label=labels["mean"]),
               Line2D([], [], color="black", lw=3, label=labels["ci_mean"]),
               Line2D([], [], color="black", lw=1.1, ls=(0, (1, 1.5)), label=labels["pi_run"])]
    fig.legend(handles=handles, loc="outside lower center", ncols=4)
    return fig


def plot_loss_vs_accuracy(epochs: pd.DataFrame, highlight: str, color: str,
                          labels: dict, ax=None) -> Figure:
    """Validation loss (left) beside validation accuracy (right): smooth curve vs staircase.

    epochs: run_id, epoch, val_loss, val_accuracy for the runs of one arm; `highlight` is the
    run drawn in colour (the others grey).
    """
    fig, (ax_loss, ax_acc) = _subplots(1, 2, figsize=(WIDTH, 6.4 * CM), layout="constrained",
                                       ax=ax)
    data = epochs.assign(x=lambda d: _shown(d["epoch"]))
    others = data[data["run_id"] != highlight]
    one = data[data["run_id"] == highlight].sort_values("x")
    for ax, column in ((ax_loss, "val_loss"), (ax_acc, "val_accuracy")):
        if len(others):
            ax.add_collection(LineCollection(_segments(others.dropna(subset=[column]), "x",
                                                       column),
                                             colors=GREY, linewidths=0.6, alpha=0.35))
        if column == "val_accuracy":
            ax.step(one["x"], one[column], where="mid", color=color, lw=1.6)
            ax.plot(one["x"], one[column], ls="", marker="o", ms=2.8, color=color)
        else:
            ax.plot(one["x"], one[column], color=color, lw=1.6, marker="o", ms=2.8)
        _epoch_axis(ax, int(data["epoch"].max()))
        ax.set_xlabel(labels["epoch"])
    finite = data["val_loss"][np.isfinite(data["val_loss"])]
    if len(finite):
        # grey outliers may leave the axis; the coloured run never does
        shown = one["val_loss"][np.isfinite(one["val_loss"])]
        top = max(float(np.nanpercentile(finite, 99.5)), float(shown.max()) if len(shown) else 0.0)
        ax_loss.set_ylim(max(0.0, float(finite.min()) - 0.05 * top), top * 1.05)
    ax_acc.set_ylim(-0.02, 1.02)
    _percent_axis(ax_acc)
    ax_loss.set_ylabel(labels["val_loss"])
    ax_acc.set_ylabel(labels["val_accuracy_pct"])
    ax_loss.set_title(labels["loss_title"])
    ax_acc.set_title(labels["accuracy_title"])
    return fig


def plot_learning_rate(epochs: pd.DataFrame, collapse: pd.DataFrame, colors: dict,
                       labels: dict, legend_arms: bool = True, ax=None) -> Figure:
    """Learning rate of every run on a log axis; where it collapsed is marked with a cross.

    epochs: run_id, arm, epoch, learning_rate; collapse: run_id, arm, epoch, learning_rate
    (one row per run whose rate collapsed, at the epoch it did).
    """
    fig, ax = _subplots(figsize=(WIDTH, 6.6 * CM), layout="constrained", ax=ax)
    data = epochs[epochs["learning_rate"] > 0].assign(x=lambda d: _shown(d["epoch"]))
    arms = [a for a in colors if a in set(data["arm"])]
    rng = np.random.default_rng(0)
    for arm in arms:
        runs = data[data["arm"] == arm]
        segments = [_steps_mid(seg) for seg in _segments(runs, "x", "learning_rate")]
        # tiny vertical offsets (multiplicative) so identical traces stay visible as a bundle
        offsets = 10 ** rng.uniform(-0.04, 0.04, size=len(segments))
        segments = [np.column_stack([s[:, 0], s[:, 1] * o]) for s, o in zip(segments, offsets)]
        ax.add_collection(LineCollection(segments, colors=colors[arm], linewidths=0.9,
                                         alpha=0.55, label=arm))
    if collapse is not None and len(collapse):
        for arm in arms:
            marks = collapse[collapse["arm"] == arm]
            ax.plot(_shown(marks["epoch"]), marks["learning_rate"], ls="", marker="X", ms=6,
                    mfc=colors[arm], mec="black", mew=0.6, zorder=4)
    ax.set_yscale("log")
    if len(data):
        lo, hi = float(data["learning_rate"].min()), float(data["learning_rate"].max())
        ax.set_ylim(lo / 3, hi * 3)
        # decades counted down from the initial rate, so that it is always labelled
        top, bottom = int(np.floor(np.log10(hi))), int(np.floor(np.log10(lo)))
        step = max(1, int(np.ceil((top - bottom) / 8)))
        ax.yaxis.set_major_locator(FixedLocator([10.0 ** e for e in
                                                 range(top, bottom - 1, -step)]))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(LogFormatterSciNotation())
        _epoch_axis(ax, int(data["epoch"].max()))
    ax.set_xlabel(labels["epoch"])
    ax.set_ylabel(labels["learning_rate"])
    handles = [Line2D([], [], color=colors[a], lw=1.5, label=a) for a in arms] \
        if legend_arms else []
    if collapse is not None and len(collapse):
        handles.append(Line2D([], [], ls="", marker="X", ms=6, mfc=GREY, mec="black", mew=0.6,
                              label=labels["collapse_mark"]))
    if handles:
        ax.legend(handles=handles, loc="lower left")
    return fig


def plot_variance_components(components: pd.DataFrame, colors: dict, labels: dict,
                             ax=None) -> Figure:
    """Standard deviation (accuracy points) that each source contributes, per arm.

    components: arm, component (total | finite_sample | split | seed | residual | seed_split),
    variance (fraction², clipped at 0, NaN = not estimable). Bars show sqrt(variance) in
    points. Rows appear in that order, each only if some arm has it (seed_split replaces split,
    seed and residual where seed and split are confounded). A note under the x-axis label says
    what n/a means when a bar is not estimable.
    """
    order = ["total", "finite_sample", "split", "seed", "residual", "seed_split"]
    data = components[components["component"].isin(order)].copy()
    data["sd"] = np.sqrt(pd.to_numeric(data["variance"], errors="coerce").clip(lower=0)) * 100
    order = [c for c in order if c in set(data["component"])]
    arms = [a for a in colors if a in set(data["arm"])]
    names = [labels[f"vc_{c}"] for c in order]
    lines = sum(name.count("\n") + 1 for name in names)
    height = 1.2 + 0.42 * max(len(order), 0.6 * lines) * max(1, len(arms)) ** 0.7
    fig, ax = _subplots(figsize=(WIDTH, height * CM * 1.3 + 1.6 * CM), layout="constrained",
                        ax=ax)
    band = 0.8 / max(len(arms), 1)
    missing = False
    for j, arm in enumerate(arms):
        part = data[data["arm"] == arm].set_index("component")["sd"]
        values = np.array([part.get(c, np.nan) for c in order], dtype=float)
        y = np.arange(len(order)) - 0.4 + band * (j + 0.5)
        bars = ax.barh(y, np.nan_to_num(values), height=band * 0.92, color=colors[arm],
                       label=arm)
        texts = [f"{v:.1f}" if np.isfinite(v) else "n/a" for v in values]
        missing |= not np.isfinite(values).all()
        ax.bar_label(bars, labels=texts, padding=2, fontsize=7.5)
    ax.set_yticks(np.arange(len(order)), names)
    ax.invert_yaxis()
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel(labels["sd_points"])
    right = float(np.nanmax(data["sd"])) if data["sd"].notna().any() else 1.0
    ax.set_xlim(0, right * 1.15 + 0.5)
    if len(arms) > 1:
        fig.legend(loc="outside upper center", ncols=min(len(arms), 4))
    if missing:
        # below the x-axis label (x in axes fraction, y from the label), inside the layout
        ax.annotate("n/a: " + labels["vc_missing"], xy=(1.0, 0.0),
                    xycoords=("axes fraction", ax.xaxis.label), xytext=(0, -3),
                    textcoords="offset points", ha="right", va="top", fontsize=7,
                    color="#555555")
    return fig


def plot_correct_map(maps: list, labels: dict, ax=None) -> Figure:
    """Per-image correct (blue) / wrong (light) over epochs for one or two runs.

    maps: list of dicts with title, matrix (images x epochs booleans; rows already grouped by
    class), row_labels (class of each row) and first_epoch. Each class is labelled once.
    """
    fig, axes = _subplots(1, len(maps), figsize=(WIDTH, 8.0 * CM), squeeze=False,
                          layout="constrained", ax=ax)
    cmap = matplotlib.colors.ListedColormap([WRONG, CORRECT])
    for ax, item in zip(axes.flat, maps):
        matrix = np.asarray(item["matrix"], dtype=float)
        images, n_epochs = matrix.shape
        first = item.get("first_epoch", 0)
        ax.imshow(matrix, cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="none",
                  extent=(first - 0.5, first + n_epochs - 0.5, images + 0.5, 0.5))
        ax.set_title(item["title"])
        ax.set_xlabel(labels["epoch"])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        rows = list(item.get("row_labels") or [])
        if rows and len(rows) == images:
            starts = [i for i in range(images) if i == 0 or rows[i] != rows[i - 1]]
            ends = starts[1:] + [images]
            centers = [(a + b + 1) / 2 for a, b in zip(starts, ends)]
            shown = [rows[a] for a in starts]
            ax.set_yticks(centers, [t if len(t) <= 14 else t[:13] + "…" for t in shown],
                          fontsize=7 if len(starts) <= 12 else 5.5)
            for a in starts[1:]:
                ax.axhline(a + 0.5, color="white", lw=1.0)
        else:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
        ax.tick_params(axis="y", length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    axes.flat[0].set_ylabel(labels["image_by_class"])
    handles = [matplotlib.patches.Patch(color=CORRECT, label=labels["correct"]),
               matplotlib.patches.Patch(color=WRONG, label=labels["wrong"])]
    fig.legend(handles=handles, loc="outside lower center", ncols=2)
    return fig


def plot_halfwidth(curve: pd.DataFrame, current: dict, measured: pd.DataFrame | None,
                   labels: dict, targets=(), ax=None) -> Figure:
    """95% interval half-width (points) against validation size, current n marked.

    curve: n, halfwidth (fraction) for one accuracy p; current: {"n", "halfwidth", "p"};
    measured: optional n, halfwidth, arm (run-to-run 1.96·sd of final accuracy per arm that
    differs only in validation size); targets: [(halfwidth, n needed)] drawn as guides.
    """
    fig, ax = _subplots(figsize=(WIDTH, 6.8 * CM), layout="constrained", ax=ax)
    ax.plot(curve["n"], curve["halfwidth"] * 100, color="#333333", lw=1.5,
            label=labels["hw_curve"].format(p=current["p"] * 100))
    for target, needed in targets:
        if not needed:
            continue
        ax.plot([curve["n"].min(), needed, needed], [target * 100, target * 100, 0],
                color="#8c8c8c", lw=0.8, ls=(0, (3, 2)), zorder=1)
        ax.annotate(labels["hw_target"].format(hw=target * 100, n=needed),
                    xy=(needed, target * 100), xytext=(4, 3), textcoords="offset points",
                    fontsize=7.5, color="#555555")
    ax.plot([current["n"]], [current["halfwidth"] * 100], ls="", marker="o", ms=7,
            color="#d55e00", zorder=4, label=labels["hw_current"].format(n=current["n"]))
    ax.annotate(labels["hw_current_note"].format(n=current["n"], hw=current["halfwidth"] * 100),
                xy=(current["n"], current["halfwidth"] * 100), xytext=(10, 5),
                textcoords="offset points", fontsize=8, color="#d55e00")
    if measured is not None and len(measured):
        ax.plot(measured["n"], measured["halfwidth"] * 100, ls="", marker="s", ms=5.5,
                mfc="white", mec="#0072b2", mew=1.4, zorder=5, label=labels["hw_measured"])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlim(curve["n"].min() * 0.9, curve["n"].max() * 1.1)
    ax.set_xlabel(labels["val_size"])
    ax.set_ylabel(labels["halfwidth_points"])
    top = float(curve["halfwidth"].max()) * 100
    if measured is not None and len(measured):
        top = max(top, float(measured["halfwidth"].max()) * 100)
    ax.set_ylim(0, top * 1.05)
    ax.yaxis.set_major_locator(MultipleLocator(5))
    ax.legend(loc="upper right")
    return fig


def plot_arms_paired(paired: pd.DataFrame, arms: list, colors: dict, labels: dict,
                     ax=None) -> Figure:
    """Arms compared on the same seeds and splits: each line joins one seed/fold across arms.

    paired: unit (seed/fold id), arm, final (fraction). Right panel: the paired difference of
    every arm against the first, in images when n is known (column n) else in points.
    """
    fig, (ax, ax_d) = _subplots(1, 2, figsize=(WIDTH, 7.0 * CM), layout="constrained",
                                gridspec_kw={"width_ratios": [1.25, 1]}, ax=ax)
    wide = paired.pivot_table(index="unit", columns="arm", values="final").reindex(columns=arms)
    xs = np.arange(len(arms))
    rng = np.random.default_rng(1)
    jitter = rng.uniform(-0.004, 0.004, size=wide.shape)
    segments = [np.column_stack([xs, row]) for row in (wide.to_numpy() + jitter)]
    ax.add_collection(LineCollection(segments, colors=GREY, linewidths=0.7, alpha=0.5))
    for i, arm in enumerate(arms):
        ax.plot(np.full(len(wide), xs[i]), wide[arm] + jitter[:, i], ls="", marker="o", ms=3.5,
                color=colors[arm], alpha=0.8, zorder=3)
    ax.set_xticks(xs, arms)
    ax.set_xlabel(labels["arm"])
    ax.set_xlim(-0.35, len(arms) - 0.65)
    ax.set_ylim(-0.02, 1.02)
    _percent_axis(ax)
    ax.set_ylabel(labels["final_val_accuracy_pct"])
    ax.set_title(labels["paired_title"])
    base = arms[0]
    others = [a for a in arms[1:] if a in wide]
    for row, arm in enumerate(others):
        d = ((wide[arm] - wide[base]).dropna() * 100).to_numpy()
        if not d.size:
            continue
        ys, _ = _dot_stack(d, row, 0.8, 0.09)
        ax_d.plot(d, ys, ls="", marker="o", ms=3.6, color=colors[arm], alpha=0.85, mew=0)
    if others:
        ax_d.axvline(0, color="black", lw=0.8)
        ax_d.spines["left"].set_visible(False)    # categorical rows: the zero line is the axis
        ax_d.set_yticks(np.arange(len(others)), others)
        ax_d.set_ylim(len(others) - 0.75, -0.9)   # inverted: dots stack upwards from a row
        ax_d.tick_params(axis="y", length=0)
        ax_d.set_xlabel(labels["paired_diff"].format(base=base))
        ax_d.set_title(labels["paired_diff_title"])
    else:
        ax_d.set_visible(False)
    if len(arms) > 3:
        ax.tick_params(axis="x", labelrotation=30)
    return fig


def plot_selection(selection: pd.DataFrame, colors: dict, labels: dict, ax=None) -> Figure:
    """Validation accuracy at the chosen (best) epoch against truth-set accuracy, per run.

    selection: run_id, arm, chosen (val accuracy at the best epoch), truth (truth-set accuracy
    at that epoch), fractions. Points above the identity line overstate the model.
    """
    fig, ax = _subplots(figsize=(WIDTH * 0.62, WIDTH * 0.52), layout="constrained", ax=ax)
    ax.plot([0, 1], [0, 1], color="black", lw=0.9, ls="--", zorder=1,
            label=labels["identity"])
    arms = [a for a in colors if a in set(selection["arm"])]
    for arm in arms:
        part = selection[selection["arm"] == arm]
        ax.plot(part["truth"], part["chosen"], ls="", marker="o", ms=4, alpha=0.75,
                color=colors[arm], label=arm, zorder=3)
    lo = float(np.nanmin(selection[["truth", "chosen"]].to_numpy())) if len(selection) else 0.0
    lo = max(0.0, np.floor(lo * 10) / 10 - 0.05)
    ax.set_xlim(lo, 1.01)
    ax.set_ylim(lo, 1.01)
    ax.set_aspect("equal")
    _percent_axis(ax, "x")
    _percent_axis(ax, "y")
    ax.set_xlabel(labels["truth_accuracy_pct"])
    ax.set_ylabel(labels["chosen_accuracy_pct"])
    ax.legend(loc="lower right")
    ax.text(0.03, 0.97, labels["above_overstates"], transform=ax.transAxes, ha="left",
            va="top", fontsize=7.5, color="#555555")
    return fig


# --------------------------------------------------------------------------- validation images

def plot_image_grid(panels: list, missing_label: str, columns: int = 6) -> Figure:
    """Thumbnail grid of validation images with captions under each, one block per panel.

    panels: list of dicts with title and tiles; each tile has pixels ((H, W, 3) uint8, or None
    for an image that could not be read: drawn as a labelled empty square) and lines (caption
    lines, shortest first). 6 tiles per row of a 16 cm page (2.6 cm each, 7-pt captions).
    """
    rows = [max(1, int(np.ceil(len(p["tiles"]) / columns))) for p in panels]
    max_lines = max((len(t["lines"]) for p in panels for t in p["tiles"]), default=1)
    row_cm = WIDTH / CM / columns + 0.32 * max_lines + 0.2
    # Each panel's own height (its rows plus its title), so the subfigures' height ratios are
    # what each panel needs: ratios by rows alone starved a short last panel of its share of
    # the titles' height and cut its last caption line at the figure's bottom edge.
    heights = [n * row_cm + 0.7 for n in rows]
    fig = Figure(figsize=(WIDTH, sum(heights) * CM), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(panels), 1, height_ratios=heights))
    for subfig, panel, n_rows in zip(subfigs, panels, rows):
        subfig.suptitle(panel["title"], x=0.0, ha="left", fontsize=9)
        axes = np.atleast_1d(subfig.subplots(n_rows, columns, squeeze=False)).ravel()
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
            # image at the top of its cell, caption right under it: centred (the default), a
            # cell taller than its square image pushed the caption below the room kept for it
            ax.set_anchor("N")
            for spine in ax.spines.values():
                spine.set_visible(False)
        for ax, tile in zip(axes, panel["tiles"]):
            if tile["pixels"] is None:
                ax.set_facecolor("#eeeeee")
                ax.text(0.5, 0.5, missing_label, ha="center", va="center", fontsize=7,
                        color=GREY, transform=ax.transAxes)
                ax.set_aspect("equal")
            else:
                ax.imshow(tile["pixels"], interpolation="nearest")
            for spine in ax.spines.values():
                spine.set_visible(True)
                spine.set_color(LATTICE_GREY)
            ax.set_xlabel("\n".join(tile["lines"]), fontsize=7, linespacing=1.15)
    return fig


def plot_against(panels: list, labels: dict, color: str) -> Figure:
    """One curve drawn over its reruns' band, one panel per metric (val accuracy, val loss).

    panels: list of dicts with metric ("val_accuracy" or "val_loss"), n (validation images,
    for the lattice; accuracy only) and frame (one row per epoch: epoch, value, low, median,
    high, outside in -1/0/+1 or NA). Points outside the band are drawn as open red circles.
    """
    fig, axes = _subplots(1, len(panels), figsize=(WIDTH, 6.5 * CM), squeeze=False,
                          layout="constrained")
    for ax, panel in zip(axes.flat, panels):
        frame = panel["frame"].sort_values("epoch")
        x = _shown(frame["epoch"])
        accuracy = panel["metric"] == "val_accuracy"
        if accuracy:
            _lattice_lines(ax, panel["n"])
        ax.fill_between(x, frame["low"], frame["high"], color=GREY, alpha=0.3, lw=0,
                        label=labels["reruns_band"])
        ax.plot(x, frame["median"], color=GREY, lw=1.0, ls="--", label=labels["reruns_median"])
        ax.plot(x, frame["value"], color=color, marker="o", ms=3.0, lw=1.4,
                label=labels["this_run"], zorder=3)
        out = frame["outside"].fillna(0).to_numpy() != 0
        if out.any():
            ax.scatter(np.asarray(x)[out], frame["value"].to_numpy()[out], s=42,
                       facecolors="none", edgecolors="#c0392b", lw=1.1, zorder=4,
                       label=labels["outside"])
        _epoch_axis(ax, int(frame["epoch"].max()))
        ax.set_xlabel(labels["epoch"])
        if accuracy:
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel(labels["val_accuracy_pct"])
            _percent_axis(ax)
        else:
            ax.set_ylabel(labels["val_loss"])
    handles, names = [], []
    for ax in axes.flat:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            if name not in names:
                handles.append(handle)
                names.append(name)
    fig.legend(handles, names, loc="outside lower center", ncols=len(names))
    return fig
