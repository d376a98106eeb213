"""Figures (seaborn on matplotlib) drawn from the tidy results of `valstat.stats`.

Every function takes ready-made tables (no statistics are computed here), a `labels` mapping with
the figure text of one language (valstat/report/<lang>.toml, table [figures]) and returns a
matplotlib Figure sized for a thesis page (16 cm wide). `save_figure` writes each figure once as
PDF (TrueType fonts embedded, pdf.fonttype 42), SVG (text as paths) and 300-dpi PNG.

Epochs are stored counted from 0 (Keras callbacks); figures show them counted from 1, as Keras
prints "Epoch 1/30".

Array/table shapes (one row per ...):
  epochs:  run_id, arm, epoch, val_accuracy, val_loss, learning_rate   (run x epoch)
  bands:   arm, epoch, estimate, low, high                             (arm x epoch)
  changes: valstat.stats.curve_changes output                          (epoch)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, MultipleLocator  # noqa: E402

from valstat.fonts import font_family  # noqa: E402

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
        "savefig.bbox": "tight", "savefig.pad_inches": 0.03,
        "svg.hashsalt": "valstat", "pdf.compression": 6,
        "path.simplify": True,
    })
    return rc


@contextlib.contextmanager
def figure_context(lang: str = "en"):
    """Apply valstat's figure style inside the block (restores rcParams afterwards)."""
    with plt.rc_context(style(lang)):
        yield


@dataclass
class SavedFigure:
    """One figure written in the three formats; `svg` is the SVG text (for inlining)."""

    stem: str
    paths: dict
    svg: str


def save_figure(fig: Figure, dest: str | Path, stem: str, formats=FORMATS) -> SavedFigure:
    """Write `fig` as dest/stem.{pdf,svg,png} (each format once) and close it."""
    dest = Path(dest)
    paths = {}
    metadata = {"pdf": {"Creator": "valstat", "Producer": "valstat (matplotlib)",
                        "CreationDate": None},
                "svg": {"Date": None}, "png": {"Software": "valstat"}}
    try:
        for fmt in formats:
            path = dest / f"{stem}.{fmt}"
            fig.savefig(path, format=fmt, metadata=metadata.get(fmt))
            paths[fmt] = path
    finally:
        plt.close(fig)
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
    """Stored epoch (from 0) -> shown epoch (from 1)."""
    return np.asarray(epoch) + 1


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
    ax.set_xlim(0.5, max_epoch + 1.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8, min_n_ticks=3))


def _segments(frame, x, y, by="run_id"):
    """(n_lines, points, 2) list of arrays for a LineCollection, one line per `by` value."""
    return [np.column_stack([g[x].to_numpy(float), g[y].to_numpy(float)])
            for _, g in frame.sort_values([by, x]).groupby(by, sort=False)]


def _facet_axes(n_panels, height_cm, max_cols=3, sharey=True):
    cols = min(max_cols, max(1, n_panels))
    rows = int(np.ceil(n_panels / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, height_cm * CM * rows),
                             sharey=sharey, squeeze=False, layout="constrained")
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n_panels])


# --------------------------------------------------------------------------- figures

def plot_val_accuracy_runs(epochs: pd.DataFrame, bands: pd.DataFrame, val_sizes: dict,
                           colors: dict, labels: dict) -> Figure:
    """Every run's validation accuracy (thin), the arm mean and its 95% band, k/n lattice lines.

    epochs: run_id, arm, epoch, val_accuracy; bands: arm, epoch, estimate, low, high;
    val_sizes: {arm: n} for the lattice lines. One panel per arm.
    """
    arms = [a for a in colors if a in set(epochs["arm"])]
    fig, axes = _facet_axes(len(arms), 6.2)
    max_epoch = int(epochs["epoch"].max())
    for ax, arm in zip(axes, arms):
        runs = epochs[epochs["arm"] == arm].assign(x=lambda d: _shown(d["epoch"]))
        _lattice_lines(ax, val_sizes.get(arm))
        ax.add_collection(LineCollection(_segments(runs, "x", "val_accuracy"), colors=GREY,
                                         linewidths=0.6, alpha=0.45, zorder=1))
        band = bands[bands["arm"] == arm].sort_values("epoch")
        x = _shown(band["epoch"])
        ax.fill_between(x, band["low"], band["high"], color=colors[arm], alpha=0.28, lw=0,
                        zorder=2)
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


def plot_run_band(changes: pd.DataFrame, drop: dict | None, run_label: str, color: str,
                  labels: dict) -> Figure:
    """One run's validation accuracy with its per-epoch 95% Wilson band; the largest drop marked.

    changes: curve_changes output (epoch, val_accuracy, n, low, high, within_noise ...);
    drop: largest_drop output or None.
    """
    fig, ax = plt.subplots(figsize=(WIDTH, 6.8 * CM), layout="constrained")
    n = int(changes["n"].iloc[0])
    x = _shown(changes["epoch"])
    _lattice_lines(ax, n)
    ax.fill_between(x, changes["low"], changes["high"], color=color, alpha=0.22, lw=0,
                    step=None, label=labels["wilson_band"])
    ax.plot(x, changes["val_accuracy"], color=color, marker="o", ms=3.2, lw=1.4,
            label=labels["val_accuracy"], zorder=3)
    if drop is not None:
        x0, x1 = drop["from_epoch"] + 1, drop["to_epoch"] + 1
        y0 = float(changes.loc[changes["epoch"] == drop["from_epoch"], "val_accuracy"].iloc[0])
        y1 = float(changes.loc[changes["epoch"] == drop["to_epoch"], "val_accuracy"].iloc[0])
        verdict = labels["within_noise"] if drop["within_noise"] else labels["beyond_noise"]
        text = labels["drop_note"].format(images=-drop["images"], n=n, p=drop["p_value"],
                                          verdict=verdict)
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "->", "color": "black", "lw": 1.1}, zorder=4)
        below = y1 > 0.45
        ax.annotate(text, xy=(x1, y1), xytext=(0, -34 if below else 30),
                    textcoords="offset points", ha="center" if 3 < x1 < x.max() - 2 else "left",
                    va="top" if below else "bottom", fontsize=8,
                    bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": GREY, "lw": 0.6},
                    arrowprops={"arrowstyle": "-", "color": GREY, "lw": 0.6}, zorder=5)
    ax.set_title(run_label)
    ax.set_ylim(-0.02, 1.02)
    _epoch_axis(ax, int(changes["epoch"].max()))
    ax.set_xlabel(labels["epoch"])
    ax.set_ylabel(labels["val_accuracy_pct"])
    _percent_axis(ax)
    ax.legend(loc="lower right")
    return fig


def plot_accuracy_distribution(per_run: pd.DataFrame, intervals: dict, val_sizes: dict,
                               colors: dict, labels: dict) -> Figure:
    """Final and best validation accuracy of every run, stacked on the k/n lattice, per arm.

    per_run: arm, final, best (fractions); intervals: {arm: {"final": dict, "best": dict}} with
    estimate, low, high (CI of the mean) and pi_low, pi_high (where one new run may land).
    """
    arms = [a for a in colors if a in set(per_run["arm"])]
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 7.2 * CM), sharey=True,
                             layout="constrained")
    n_min = min((val_sizes.get(a) or 0 for a in arms), default=0) or None
    for ax, column, title in zip(axes, ("final", "best"), (labels["final"], labels["best"])):
        _lattice_lines(ax, n_min)
        data = per_run[["arm", column]].dropna()
        size = 3.2 if len(data) / max(len(arms), 1) <= 40 else 2.0
        sns.swarmplot(data=data, x="arm", y=column, hue="arm", order=arms, hue_order=arms,
                      palette=colors, size=size, ax=ax, legend=False, zorder=2,
                      warn_thresh=1.0)
        for i, arm in enumerate(arms):
            info = (intervals.get(arm) or {}).get(column)
            if not info or not np.isfinite(info.get("estimate", np.nan)):
                continue
            xs = i + 0.42
            if np.isfinite(info.get("pi_low", np.nan)):
                ax.vlines(xs, max(info["pi_low"], -0.02), min(info["pi_high"], 1.02),
                          color=colors[arm], lw=1.0, linestyles=":", zorder=3)
            if np.isfinite(info.get("low", np.nan)):
                ax.vlines(xs, info["low"], info["high"], color=colors[arm], lw=3.0, zorder=3)
            ax.plot([xs], [info["estimate"]], marker="D", ms=4.5, color="white",
                    mec=colors[arm], mew=1.3, zorder=4)
        ax.set_title(title)
        ax.set_xlabel("")
        ax.set_xlim(-0.6, len(arms) - 0.4 + 0.2)
        ax.set_ylim(-0.02, 1.02)
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
               Line2D([], [], color="black", lw=1, ls=":", label=labels["pi_run"])]
    fig.legend(handles=handles, loc="outside lower center", ncols=4)
    return fig


def plot_loss_vs_accuracy(epochs: pd.DataFrame, highlight: str, color: str,
                          labels: dict) -> Figure:
    """Validation loss (left) beside validation accuracy (right): smooth curve vs staircase.

    epochs: run_id, epoch, val_loss, val_accuracy for the runs of one arm; `highlight` is the
    run drawn in colour (the others grey).
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(WIDTH, 6.4 * CM), layout="constrained")
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
        top = float(np.nanpercentile(finite, 99.5))
        ax_loss.set_ylim(max(0.0, float(finite.min()) - 0.05 * top), top * 1.05)
    ax_acc.set_ylim(-0.02, 1.02)
    _percent_axis(ax_acc)
    ax_loss.set_ylabel(labels["val_loss"])
    ax_acc.set_ylabel(labels["val_accuracy_pct"])
    ax_loss.set_title(labels["loss_title"])
    ax_acc.set_title(labels["accuracy_title"])
    return fig


def plot_learning_rate(epochs: pd.DataFrame, collapse: pd.DataFrame, colors: dict,
                       labels: dict) -> Figure:
    """Learning rate of every run on a log axis; where it collapsed is marked with a cross.

    epochs: run_id, arm, epoch, learning_rate; collapse: run_id, arm, epoch, learning_rate
    (one row per run whose rate collapsed, at the epoch it did).
    """
    fig, ax = plt.subplots(figsize=(WIDTH, 6.6 * CM), layout="constrained")
    data = epochs[epochs["learning_rate"] > 0].assign(x=lambda d: _shown(d["epoch"]))
    arms = [a for a in colors if a in set(data["arm"])]
    rng = np.random.default_rng(0)
    for arm in arms:
        runs = data[data["arm"] == arm]
        segments = _segments(runs, "x", "learning_rate")
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
        span = np.log10(hi) - np.log10(lo)
        ax.yaxis.set_major_locator(LogLocator(base=10, numticks=12 if span < 10 else 7))
        _epoch_axis(ax, int(data["epoch"].max()))
    ax.set_xlabel(labels["epoch"])
    ax.set_ylabel(labels["learning_rate"])
    handles = [Line2D([], [], color=colors[a], lw=1.5, label=a) for a in arms]
    handles.append(Line2D([], [], ls="", marker="X", ms=6, mfc=GREY, mec="black", mew=0.6,
                          label=labels["collapse_mark"]))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


def plot_variance_components(components: pd.DataFrame, colors: dict, labels: dict) -> Figure:
    """Standard deviation (accuracy points) that each source contributes, per arm.

    components: arm, component (finite_sample | split | seed | residual | total), variance
    (fraction², clipped at 0, NaN = not estimable). Bars show sqrt(variance) in points.
    """
    order = ["total", "finite_sample", "split", "seed", "residual"]
    data = components[components["component"].isin(order)].copy()
    data["sd"] = np.sqrt(data["variance"].astype(float).clip(lower=0)) * 100
    arms = [a for a in colors if a in set(data["arm"])]
    names = {c: labels[f"vc_{c}"] for c in order}
    data["label"] = data["component"].map(names)
    fig, ax = plt.subplots(figsize=(WIDTH, (3.2 + 0.9 * len(order) * max(1, len(arms)) ** 0.5)
                                    * CM), layout="constrained")
    sns.barplot(data=data, y="label", x="sd", hue="arm", order=[names[c] for c in order],
                hue_order=arms, palette=colors, ax=ax, orient="h", errorbar=None,
                saturation=0.9, width=0.75)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.1f", padding=2, fontsize=7.5)
    missing = data[~np.isfinite(data["variance"].astype(float))]
    ax.set_xlabel(labels["sd_points"])
    ax.set_ylabel("")
    right = float(np.nanmax(data["sd"])) if data["sd"].notna().any() else 1.0
    ax.set_xlim(0, right * 1.18 + 0.5)
    if len(arms) > 1:
        ax.legend(title=None, loc="lower right")
    elif ax.get_legend():
        ax.get_legend().remove()
    if len(missing):
        ax.text(0.99, 0.02 if len(arms) <= 1 else 0.98, labels["vc_missing"],
                transform=ax.transAxes, ha="right", va="bottom" if len(arms) <= 1 else "top",
                fontsize=7, color="#555555")
    return fig


def plot_correct_map(maps: list, labels: dict) -> Figure:
    """Per-image correct (blue) / wrong (light) over epochs for one or two runs.

    maps: list of dicts with title, matrix (images x epochs booleans; rows already ordered),
    row_labels (class of each image) and optionally predicted (images x epochs ints).
    """
    fig, axes = plt.subplots(1, len(maps), figsize=(WIDTH, 8.4 * CM), squeeze=False,
                             layout="constrained")
    cmap = matplotlib.colors.ListedColormap([WRONG, CORRECT])
    for ax, item in zip(axes.flat, maps):
        matrix = np.asarray(item["matrix"], dtype=float)
        images, n_epochs = matrix.shape
        ax.imshow(matrix, cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest",
                  extent=(0.5, n_epochs + 0.5, images + 0.5, 0.5))
        ax.set_title(item["title"])
        ax.set_xlabel(labels["epoch"])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        if images <= 40:
            ax.set_yticks(np.arange(1, images + 1))
            ax.set_yticklabels([str(v) for v in item.get("row_labels", [])] or None,
                               fontsize=5.5 if images > 20 else 7)
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
                   labels: dict) -> Figure:
    """95% interval half-width (points) against validation size, current n marked.

    curve: n, halfwidth (fraction) for one accuracy p; current: {"n", "halfwidth", "p"};
    measured: optional n, halfwidth, arm (run-to-run 1.96·sd of final accuracy per arm that
    differs only in validation size).
    """
    fig, ax = plt.subplots(figsize=(WIDTH, 6.8 * CM), layout="constrained")
    ax.plot(curve["n"], curve["halfwidth"] * 100, color="#333333", lw=1.6,
            label=labels["hw_curve"].format(p=current["p"] * 100))
    ax.plot([current["n"]], [current["halfwidth"] * 100], ls="", marker="o", ms=7,
            color="#d55e00", zorder=4, label=labels["hw_current"].format(n=current["n"]))
    ax.annotate(labels["hw_current_note"].format(n=current["n"], hw=current["halfwidth"] * 100),
                xy=(current["n"], current["halfwidth"] * 100), xytext=(12, 6),
                textcoords="offset points", fontsize=8, color="#d55e00")
    for target in (0.05, 0.02):
        ax.axhline(target * 100, color=LATTICE_GREY, lw=0.8, zorder=0)
    if measured is not None and len(measured):
        ax.plot(measured["n"], measured["halfwidth"] * 100, ls="", marker="s", ms=5.5,
                mfc="white", mec="#0072b2", mew=1.4, zorder=5, label=labels["hw_measured"])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel(labels["val_size"])
    ax.set_ylabel(labels["halfwidth_points"])
    ax.set_ylim(0, float(curve["halfwidth"].max()) * 100 * 1.05)
    ax.yaxis.set_major_locator(MultipleLocator(5))
    ax.legend(loc="upper right")
    return fig


def plot_arms_paired(paired: pd.DataFrame, arms: list, colors: dict, labels: dict) -> Figure:
    """Arms compared on the same seeds and splits: each line joins one seed/fold across arms.

    paired: unit (seed/fold id), arm, final (fraction). Right panel: the paired difference of
    every arm against the first, in images when n is known (column n) else in points.
    """
    fig, (ax, ax_d) = plt.subplots(1, 2, figsize=(WIDTH, 7.0 * CM), layout="constrained",
                                   gridspec_kw={"width_ratios": [1.25, 1]})
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
    ax.set_xlim(-0.35, len(arms) - 0.65)
    ax.set_ylim(-0.02, 1.02)
    _percent_axis(ax)
    ax.set_ylabel(labels["final_val_accuracy_pct"])
    ax.set_title(labels["paired_title"])
    base = arms[0]
    diffs = []
    for arm in arms[1:]:
        d = (wide[arm] - wide[base]).dropna() * 100
        diffs.append(pd.DataFrame({"arm": arm, "diff": d.to_numpy()}))
    if diffs:
        diff = pd.concat(diffs, ignore_index=True)
        sns.swarmplot(data=diff, y="arm", x="diff", hue="arm", palette=colors,
                      order=arms[1:], ax=ax_d, size=3.5, legend=False, warn_thresh=1.0)
        ax_d.axvline(0, color="black", lw=0.8)
        ax_d.set_xlabel(labels["paired_diff"].format(base=base))
        ax_d.set_ylabel("")
        ax_d.set_title(labels["paired_diff_title"])
    else:
        ax_d.set_visible(False)
    if len(arms) > 3:
        ax.tick_params(axis="x", labelrotation=30)
    return fig


def plot_selection(selection: pd.DataFrame, colors: dict, labels: dict) -> Figure:
    """Validation accuracy at the chosen (best) epoch against truth-set accuracy, per run.

    selection: run_id, arm, chosen (val accuracy at the best epoch), truth (truth-set accuracy
    at that epoch), fractions. Points above the identity line overstate the model.
    """
    fig, ax = plt.subplots(figsize=(WIDTH * 0.62, WIDTH * 0.52), layout="constrained")
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
