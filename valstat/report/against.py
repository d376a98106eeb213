"""The single-run report's part for `valstat diagnose HISTORY --against OUT_DIR --report DIR`:
sentences and the figure of the history over its reruns' band (from valstat.against output)."""

from __future__ import annotations

import pandas as pd

from valstat.report import plots
from valstat.report.text import Strings, epoch, pct

STEM = "against_reruns"


def paragraphs(placement: dict, S: Strings) -> list:
    """Sentences placing the history among its reruns (one language)."""
    A = S.section("against")
    level = pct(placement["level"], 0)
    out = [A["intro"].format(reruns=placement["reruns"], n=placement["val_size"],
                             arms=", ".join(placement["arms"]), level=level)]
    for metric in ("val_accuracy", "val_loss"):
        count = (placement.get("outside") or {}).get(metric)
        if count and count["compared"]:
            out.append(A[f"outside_{metric}"].format(out=count["epochs"],
                                                     epochs=count["compared"], level=level))
    drop = placement.get("largest_drop")
    if drop is not None:
        out.append(A["drop"].format(images=S.images(int(drop["value"])),
                                    percentile=f"{drop['percentile']:.0f}",
                                    median=epoch(drop["median"]), low=epoch(drop["low"]),
                                    high=epoch(drop["high"]), level=level,
                                    verdict=A["typical" if drop["typical"] else "unusual"]))
    collapse = placement["lr_collapse"]
    if collapse["recorded"] and collapse["reruns_with_rate"]:
        key = "collapse_never" if collapse["epoch"] is None else (
            "collapse_placed" if collapse["placed"] else "collapse_alone")
        placed = collapse["placed"] or {}
        out.append(A[key].format(epoch=collapse["epoch"], collapsed=collapse["reruns_collapsed"],
                                 reruns=collapse["reruns_with_rate"],
                                 median=epoch(placed.get("median")),
                                 low=epoch(placed.get("low")), high=epoch(placed.get("high")),
                                 level=level,
                                 verdict=A["typical" if collapse["typical"] else "unusual"]))
    return out


def figure(placement: dict, S: Strings, dest):
    """The history over the reruns' band, val accuracy and val loss (a FigureEntry)."""
    from valstat.report.figures import _entry

    panels = []
    for metric in ("val_accuracy", "val_loss"):
        rows = [{"epoch": row["epoch"], **row[metric]} for row in placement["epochs"]
                if metric in row and row[metric]["low"] is not None]
        if rows:
            panels.append({"metric": metric, "n": placement["val_size"],
                           "frame": pd.DataFrame(rows).astype({"outside": "Int64"})})
    if not panels:
        return None
    labels = {**S.section("figures"), **S.section("against")}
    color = plots.arm_colors(["run"])["run"]
    with plots.figure_context(S.lang):
        fig = plots.plot_against(panels, labels, color)
        caption = S("against.caption", reruns=placement["reruns"], n=placement["val_size"],
                    level=pct(placement["level"], 0))
        return _entry(plots.save_figure(fig, dest, STEM), caption)
