"""`valstat diagnose HISTORY --against OUT_DIR`: one Keras history placed among a store's reruns.

:func:`place_history` reads the store, keeps the runs scored on as many validation images as the
history (not diverged; optionally one arm) and asks :mod:`valstat.stats.against` where the
history falls among them: per epoch (percentile of val accuracy and val loss, and whether it
leaves the reruns' 95 % band), its largest drop and its learning-rate collapse epoch.
:func:`format_placement` words the result for the terminal. Plain JSON types only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from valstat.core import Settings, build_core, history_core
from valstat.core.plain import to_plain
from valstat.errors import UserError
from valstat.history import validate_epochs
from valstat.stats.against import largest_fall, place_curve, place_value
from valstat.stats.lattice import LATTICE_TOLERANCE


def _fits(accuracy: np.ndarray, n: int) -> bool:
    scaled = accuracy * n
    return bool(np.all(np.abs(scaled - np.rint(scaled)) <= LATTICE_TOLERANCE))


def _choose_val_size(accuracy: np.ndarray, sizes: list, val_size, out_dir) -> int:
    """The history's validation size: `val_size`, else the one store size its accuracies fit."""
    if val_size is not None:
        return int(val_size)
    fitting = [n for n in sizes if _fits(accuracy, n)]
    if len(fitting) == 1:
        return fitting[0]
    listed = ", ".join(str(n) for n in sizes)
    if not fitting:
        raise UserError(f"the history's val_accuracy values are not whole numbers of images "
                        f"for any validation size in the store in {out_dir} ({listed}): its "
                        "runs were scored on a different number of images")
    raise UserError(f"the history fits several validation sizes of the store in {out_dir} "
                    f"({', '.join(map(str, fitting))}); pass --val-size N")


def place_history(history: pd.DataFrame, out_dir, val_size: int | None = None,
                  arm: str | None = None, level: float = 0.95, settings: Settings | None = None) -> dict:
    """Where one history falls among the store's reruns with the same validation size.

    history: tidy epochs table (epoch, val_accuracy, optionally val_loss, learning_rate), as
    read by valstat.history.read_history. val_size: validation images (None: the one store
    size the accuracies fit). arm: only that arm's runs (None: every arm of that size).
    Returns a JSON-ready dict: store, val_size, arms, reruns (R), level, epochs [{epoch,
    val_accuracy: {value, reruns, percentile, median, low, high, outside}, val_loss: {...}}]
    (percentiles 0..100; outside -1/0/+1, null where no rerun reached the epoch),
    outside {metric: {epochs, compared}}, largest_drop {value (images), reruns, percentile,
    median, low, high, typical}, lr_collapse {epoch (null: never), recorded, reruns_collapsed,
    reruns_with_rate, placed (place_value of the epoch among the collapsed reruns, or null),
    typical (at least (1 - level)/2 of the reruns share its fate, and its epoch is inside the
    collapsed reruns' band; null without rates)}.
    The reruns are the store's counted runs (valstat.core: not diverged unless
    settings.count_diverged); collapse epochs come from the run table (settings.collapse_threshold).
    UserError: no runs, no runs with that validation size, unknown arm, history off-lattice.
    """
    from valstat.store import load_tables

    settings = settings or Settings(level=level)
    level = settings.level
    history = validate_epochs(history, "history")
    tables = load_tables(out_dir)
    if tables.runs.empty or tables.epochs.empty:
        raise UserError(f"the store in {out_dir} holds no finished runs to compare with")
    core = build_core(tables.runs, tables.epochs, tables.predictions, dict(tables.meta or {}), settings)
    runs = core.counted
    if arm is not None:
        if arm not in set(tables.runs["arm"]):
            raise UserError(f"the store in {out_dir} has no arm {arm!r} (arms: "
                            f"{', '.join(sorted(set(tables.runs['arm'])))})")
        runs = runs[runs["arm"] == arm]
    sizes = sorted({int(v) for v in pd.to_numeric(runs["n_val"], errors="coerce").dropna()})
    if runs.empty:
        raise UserError(f"the store in {out_dir} holds no finished runs to compare with")
    if not sizes:
        raise UserError(f"the runs in {out_dir} do not record their validation size")
    accuracy = history["val_accuracy"].to_numpy(dtype=float)
    n = _choose_val_size(accuracy, sizes, val_size, out_dir)
    if not _fits(accuracy, n):
        raise UserError(f"the history's val_accuracy values are not whole numbers of images "
                        f"out of {n}; check --val-size")
    if n not in sizes:
        raise UserError(f"the store in {out_dir} has no runs with {n} validation images "
                        f"(its runs have {', '.join(map(str, sizes))}); compare with reruns "
                        "scored on as many images as the history")
    chosen = runs[pd.to_numeric(runs["n_val"], errors="coerce") == n]
    reruns = tables.epochs[tables.epochs["run_id"].isin(chosen["run_id"])]
    reruns = reruns.sort_values(["run_id", "epoch"])

    placed = place_curve(history, reruns, level)
    epochs = []
    for epoch, group in placed.groupby("epoch", sort=True):
        epochs.append({"epoch": int(epoch), **{
            row.metric: {"value": row.value, "reruns": row.reruns, "percentile": row.percentile,
                         "median": row.median, "low": row.low, "high": row.high,
                         "outside": None if pd.isna(row.outside) else int(row.outside)}
            for row in group.itertuples(index=False)}})
    outside = {metric: {"epochs": int((part["outside"].fillna(0) != 0).sum()),
                        "compared": int(part["outside"].notna().sum())}
               for metric, part in placed.groupby("metric", sort=False)}

    per_run = dict(tuple(reruns.groupby("run_id")))
    falls = [largest_fall(g["val_accuracy"].to_numpy(dtype=float), n) for g in per_run.values()
             if np.isfinite(g["val_accuracy"]).all()]
    drop = place_value(largest_fall(accuracy, n), falls, level) if falls else None

    own_run = history_core(history, n, settings).runs.iloc[0]
    own = None if pd.isna(own_run["collapse_epoch"]) else int(own_run["collapse_epoch"])
    with_rate = chosen[chosen["lr_initial"].notna()]
    collapsed = [int(e) for e in with_rate["collapse_epoch"].dropna()]
    collapse = {"epoch": own, "recorded": "learning_rate" in history,
                "reruns_collapsed": len(collapsed), "reruns_with_rate": len(with_rate),
                "placed": place_value(own, collapsed, level) if own is not None and collapsed
                else None, "typical": None}
    if collapse["recorded"] and len(with_rate):
        # typical: at least (1 - level)/2 of the reruns share its fate (collapsed or not), and
        # a collapse epoch inside the collapsed reruns' band
        share = len(collapsed if own is not None else with_rate) / len(with_rate)
        if own is None:
            share = 1 - len(collapsed) / len(with_rate)
        collapse["typical"] = share >= (1 - level) / 2 and (
            collapse["placed"] is None or collapse["placed"]["typical"])
    return to_plain({
        "store": str(out_dir), "val_size": n, "arms": sorted(set(chosen["arm"])),
        "reruns": int(len(chosen)), "level": level, "epochs": epochs, "outside": outside,
        "largest_drop": drop, "lr_collapse": collapse})


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.0f}th"


def format_placement(result: dict) -> str:
    """Text for the terminal: per-epoch percentiles and the verdicts on drop and collapse."""
    n, level = result["val_size"], f"{100 * result['level']:g}%"
    lines = [f"against {result['reruns']} reruns in {result['store']} with {n} validation "
             f"images (arms: {', '.join(result['arms'])}); percentiles among the reruns at the "
             f"same epoch, {level} band = central {level} of the reruns"]
    lines.append(f"{'epoch':>5}  {'val acc':>7}  {'pct':>5}  {'band':<15}  "
                 f"{'val loss':>8}  {'pct':>5}  band")
    for row in result["epochs"]:
        cells = []
        for metric, fmt in (("val_accuracy", "{:.1%}"), ("val_loss", "{:.3f}")):
            item = row.get(metric)
            if item is None:
                cells.append(f"{'':>7}  {'':>5}  {'':<15}")
                continue
            band = "no reruns" if item["low"] is None else \
                f"{fmt.format(item['low'])}-{fmt.format(item['high'])}"
            flag = {-1: " BELOW", 1: " ABOVE"}.get(item["outside"], "")
            cells.append(f"{fmt.format(item['value']):>7}  {_pct(item['percentile']):>5}  "
                         f"{band + flag:<15}")
        lines.append(f"{row['epoch']:>5}  " + "  ".join(cells).rstrip())
    for metric, label in (("val_accuracy", "val accuracy"), ("val_loss", "val loss")):
        count = (result["outside"] or {}).get(metric)
        if count:
            lines.append(f"{label} leaves the reruns' {level} band in {count['epochs']} of "
                         f"{count['compared']} epochs")
    drop = result["largest_drop"]
    if drop is not None:
        verdict = "typical" if drop["typical"] else "unusual"
        lines.append(f"largest drop: {drop['value']:.0f} images, {_pct(drop['percentile'])} "
                     f"percentile of the reruns' largest drops (median {drop['median']:g}, "
                     f"{level} of reruns {drop['low']:g}-{drop['high']:g}): {verdict}")
    collapse = result["lr_collapse"]
    if not collapse["recorded"]:
        lines.append("learning-rate collapse: the history has no learning rate")
    else:
        own = ("never" if collapse["epoch"] is None
               else f"at epoch {collapse['epoch']}")
        text = (f"learning-rate collapse (below 1% of start): {own}; reruns: "
                f"{collapse['reruns_collapsed']} of {collapse['reruns_with_rate']}")
        placed = collapse["placed"]
        if placed:
            text += (f", median epoch {placed['median']:g} ({level} {placed['low']:g}-"
                     f"{placed['high']:g}), {_pct(placed['percentile'])} percentile")
        if collapse["typical"] is not None:
            text += ": " + ("typical" if collapse["typical"] else "unusual")
        lines.append(text)
    return "\n".join(lines) + "\n"
