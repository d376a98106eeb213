"""Draw the report's figures from an Analysis (fixed set, stable file names)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from valstat.core.design import shares_images
from valstat.report import plots
from valstat.report.analysis import Analysis, confounded, finite_sample_methods
from valstat.report.text import Strings, pct, pval
from valstat.results import LargestDrop
from valstat.stats.intervals import COLLAPSE_AWARE_BELOW

# stem -> caption key; the order is the order in the report
FIGURES = ("val_accuracy_runs", "run_band", "accuracy_distribution", "loss_vs_accuracy",
           "learning_rate", "variance_components", "correct_map", "halfwidth", "arms_paired",
           "selection", "unstable_images",    # valstat.report.thumbnails
           "against_reruns")                  # valstat.report.against (single-run report)


@dataclass
class FigureEntry:
    stem: str
    caption: str
    label: str            # LaTeX label, fig:valstat-<stem>
    uri: str              # data URI of the SVG, for the page
    files: dict           # format -> Path


def _entry(saved: plots.SavedFigure, caption: str) -> FigureEntry:
    uri = "data:image/svg+xml;base64," + base64.b64encode(saved.svg.encode("utf-8")).decode()
    return FigureEntry(saved.stem, caption, f"fig:valstat-{saved.stem.replace('_', '-')}", uri,
                       saved.paths)


def drop_note(drop: LargestDrop | None, n, S: Strings) -> str:
    """Text at the arrow of the largest drop: images lost, the Bonferroni-adjusted p the
    verdict uses (adjusted for scanning every move), within/beyond noise."""
    if drop is None:
        return ""
    L = S.section("figures")
    verdict = L["within_noise"] if drop.within_noise else L["beyond_noise"]
    return L["drop_note"].format(images=-drop.images, n=n, p_adj=pval(drop.p_adjusted),
                                 moves=S.count("moves", drop.scanned), verdict=verdict)


def _variance_caption(analysis: Analysis, C: dict) -> str:
    """Caption of the variance figure for the estimator of the validation-set noise it shows."""
    methods = finite_sample_methods(analysis)
    draw = next((m for m in ("stratified", "binomial") if f"{m}-per-run" in methods), None)
    if draw is None:
        return C["variance_components"]
    how = C[f"draw_{draw}"]
    if any(confounded(analysis, arm) for arm in analysis.arms):
        return C["variance_components_confounded"].format(how=how)
    return C["variance_components_draw"].format(how=how)


def _band_caption(analysis: Analysis, C: dict) -> str:
    """Caption of the runs-and-band figure: what the band covers in the runs' design."""
    bands = analysis.bands
    caption = C["val_accuracy_runs"]
    shared = bands[bands["design"].map(shares_images)] if len(bands) else bands
    if (shared["scope"] == "new validation images").any():
        caption += C["band_crossed"]
    if (shared["scope"] == "these validation images").any():
        caption += C["band_conditional"]
    if any(getattr(analysis.summary.arms[a].final_val_accuracy, "method", None) == "collapse-mixture"
           for a in analysis.arms):
        caption += C["band_collapse"].format(below=COLLAPSE_AWARE_BELOW)
    return caption


def figure_builders(analysis: Analysis, S: Strings) -> dict:
    """stem -> (draw, caption) for every figure the data allows, in report order;
    draw(ax=None) returns the Figure (drawn into `ax` when given)."""
    L = S.section("figures")
    C = S.section("captions")
    colors = plots.arm_colors(analysis.arms)
    epochs = analysis.epochs
    out = {}
    out["val_accuracy_runs"] = (lambda ax=None: plots.plot_val_accuracy_runs(
        epochs, analysis.bands, analysis.val_sizes, colors, L, ax=ax), _band_caption(analysis, C))
    example = analysis.example
    if example is not None:
        out["run_band"] = (lambda ax=None: plots.plot_run_band(
            example.changes, example.drop, drop_note(example.drop, example.n, S),
            example.run_id, colors[example.arm], L, ax=ax),
            C["run_band"].format(run=example.run_id, n=example.n))
    intervals = {arm: {"final": analysis.summary.arms[arm].final_val_accuracy,
                       "best": analysis.summary.arms[arm].best_val_accuracy} for arm in analysis.arms}
    per_run = analysis.runs[analysis.runs["counted"]].rename(
        columns={"final_val_accuracy": "final", "best_val_accuracy": "best"})
    out["accuracy_distribution"] = (lambda ax=None: plots.plot_accuracy_distribution(
        per_run[["arm", "final", "best"]], intervals, analysis.val_sizes, colors, L, ax=ax),
        C["accuracy_distribution"])
    if example is not None and epochs["val_loss"].notna().any():
        arm_epochs = epochs[epochs["arm"] == example.arm]
        out["loss_vs_accuracy"] = (lambda ax=None: plots.plot_loss_vs_accuracy(
            arm_epochs, example.run_id, colors[example.arm], L, ax=ax),
            C["loss_vs_accuracy"].format(run=example.run_id, arm=example.arm))
    if epochs["learning_rate"].notna().any():
        out["learning_rate"] = (lambda ax=None: plots.plot_learning_rate(
            epochs, analysis.lr_marks, colors, L, ax=ax), C["learning_rate"])
    if not analysis.variance.empty:
        out["variance_components"] = (lambda ax=None: plots.plot_variance_components(
            analysis.variance, colors, L, ax=ax), _variance_caption(analysis, C))
    if analysis.correct_maps:
        maps = [dict(m, title=L["map_collapsed" if m["kind"] == "collapsed"
                               else "map_example"].format(run=m["run_id"]))
                for m in analysis.correct_maps]
        out["correct_map"] = (lambda ax=None: plots.plot_correct_map(maps, L, ax=ax),
                              C["correct_map"])
    if analysis.halfwidth:
        hw = analysis.halfwidth
        caption = C["halfwidth"].format(arm=hw["current"]["arm"], p=pct(hw["current"]["p"], 0)) \
            + (C["halfwidth_measured"] if hw["measured"] is not None else "")
        sizes = next((a["sizes"] for a in analysis.advice.get("arms", [])
                      if a["arm"] == hw["current"]["arm"]), {})
        targets = sorted(sizes.items(), reverse=True)
        out["halfwidth"] = (lambda ax=None: plots.plot_halfwidth(
            hw["curve"], hw["current"], hw["measured"], L, targets, ax=ax), caption)
    if len(analysis.arms) > 1 and analysis.paired["arm"].nunique() > 1:
        out["arms_paired"] = (lambda ax=None: plots.plot_arms_paired(
            analysis.paired, analysis.arms, colors, L, ax=ax), C["arms_paired"])
    if len(analysis.selection):
        out["selection"] = (lambda ax=None: plots.plot_selection(
            analysis.selection, colors, L, ax=ax), C["selection"])
    return out


def make_figures(analysis: Analysis, S: Strings, dest: Path) -> list:
    """Draw every figure the data allows into `dest` (PDF, SVG, PNG); return FigureEntry list."""
    dest.mkdir(parents=True, exist_ok=True)
    with plots.figure_context(S.lang):
        return [_entry(plots.save_figure(draw(), dest, stem), caption)
                for stem, (draw, caption) in figure_builders(analysis, S).items()]


def make_single_run_figures(epochs: pd.DataFrame, changes: pd.DataFrame, drop, collapse_epoch,
                            S: Strings, dest: Path, n: int) -> list:
    """The single-run subset: band, loss beside accuracy, learning rate."""
    dest.mkdir(parents=True, exist_ok=True)
    L = S.section("figures")
    C = S.section("captions")
    color = plots.arm_colors(["run"])["run"]
    out = []
    frame = epochs.assign(run_id="run", arm="run")
    with plots.figure_context(S.lang):
        def add(stem, fig, caption):
            out.append(_entry(plots.save_figure(fig, dest, stem), caption))

        add("run_band", plots.plot_run_band(changes, drop, drop_note(drop, n, S), "", color, L),
            C["single_band"].format(n=n))
        if "val_loss" in frame and frame["val_loss"].notna().any():
            add("loss_vs_accuracy", plots.plot_loss_vs_accuracy(frame, "run", color, L),
                C["single_loss"])
        if "learning_rate" in frame and frame["learning_rate"].notna().any() and \
                (frame["learning_rate"] > 0).any():
            marks = frame.iloc[0:0][["run_id", "arm", "epoch", "learning_rate"]]
            if collapse_epoch is not None:
                marks = frame[frame["epoch"] == collapse_epoch][
                    ["run_id", "arm", "epoch", "learning_rate"]]
            add("learning_rate", plots.plot_learning_rate(frame, marks, {"run": color}, L,
                                                          legend_arms=False),
                C["single_lr"])
    return out
