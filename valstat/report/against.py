"""The single-run report's part for `valstat diagnose HISTORY --against OUT_DIR --report DIR`:
sentences and the figure of the history over its reruns' band (a valstat.results.Placement)."""

from __future__ import annotations

import pandas as pd

from valstat.against import expected_outside, verdict
from valstat.report import plots
from valstat.report.text import Strings, epoch, pct
from valstat.results import Placement

STEM = "against_reruns"


def paragraphs(placement: Placement, S: Strings) -> list:
    """Sentences placing the history among its reruns (one language)."""
    A = S.section("against")
    level = pct(placement.level, 0)
    out = [A["intro"].format(reruns=S.count("reruns", placement.reruns), n=placement.val_size,
                             arms=", ".join(placement.arms), level=level)]
    for metric in ("val_accuracy", "val_loss"):
        count = placement.outside.get(metric)
        if count is not None and count.compared:
            out.append(A[f"outside_{metric}"].format(out=count.epochs, epochs=count.compared,
                                                     level=level))
            out.append(expected_outside(count, A))
    drop = placement.largest_drop
    if drop is not None:
        out.append(A["drop"].format(images=S.images(int(drop.value)),
                                    percentile=S.ordinal(round(drop.percentile)),
                                    median=epoch(drop.median), low=epoch(drop.low),
                                    high=epoch(drop.high), level=level,
                                    verdict=verdict(drop.typical, drop.reruns, placement.level, A)))
    collapse = placement.lr_collapse
    if collapse.recorded and collapse.reruns_with_rate:
        placed = collapse.placed
        key = "collapse_never" if collapse.epoch is None else (
            "collapse_alone" if placed is None else "collapse_placed")
        band = {} if placed is None else {"median": epoch(placed.median),
                                          "low": epoch(placed.low), "high": epoch(placed.high)}
        out.append(A[key].format(epoch=collapse.epoch, collapsed=collapse.reruns_collapsed,
                                 reruns=collapse.reruns_with_rate, level=level, **band,
                                 verdict=verdict(collapse.typical, collapse.reruns_with_rate, placement.level, A)))
    return out


def figure(placement: Placement, S: Strings, dest):
    """The history over the reruns' band, val accuracy and val loss (a FigureEntry)."""
    from valstat.report.figures import _entry

    panels = []
    for metric in ("val_accuracy", "val_loss"):
        # every epoch of the history; band, median and outside are missing where no rerun got there
        rows = [{"epoch": row.epoch, **item.to_dict()} for row in placement.epochs
                if (item := getattr(row, metric)) is not None]
        if any(row["low"] is not None for row in rows):
            frame = pd.DataFrame(rows).astype({"low": float, "median": float, "high": float,
                                               "outside": "Int64"})
            panels.append({"metric": metric, "n": placement.val_size, "frame": frame})
    if not panels:
        return None
    labels = {**S.section("figures"), **S.section("against")}
    color = plots.arm_colors(["run"])["run"]
    with plots.figure_context(S.lang):
        fig = plots.plot_against(panels, labels, color)
        caption = S("against.caption", reruns=placement.reruns, n=placement.val_size,
                    level=pct(placement.level, 0))
        return _entry(plots.save_figure(fig, dest, STEM), caption)
