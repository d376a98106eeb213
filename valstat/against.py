"""`valstat diagnose HISTORY --against OUT_DIR`: one Keras history placed among a store's reruns.

:func:`place_history` reads the store, keeps the runs scored on as many validation images as the
history (not diverged) in one arm and asks :mod:`valstat.stats.against` where the
history falls among them: per epoch (percentile of val accuracy and val loss, and whether it
leaves the reruns' 95 % band), its largest drop and its learning-rate collapse epoch, as one
valstat.results.Placement. :func:`format_placement` words it for the terminal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from valstat.core import Settings, build_core, history_core
from valstat.core.plain import to_plain
from valstat.errors import ValstatError
from valstat.history import validate_epochs
from valstat.report.text import Strings
from valstat.results import (CollapsePlacement, EpochPlacement, OutsideCount, PlacedMetric,
                             PlacedValue, Placement)
from valstat.stats.against import largest_fall, place_curve, place_value, verdict_reruns
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
        raise ValstatError(f"the history's val_accuracy values are not whole numbers of images "
                        f"for any validation size in the store in {out_dir} ({listed}): its "
                        "runs were scored on a different number of images")
    raise ValstatError(f"the history fits several validation sizes of the store in {out_dir} "
                    f"({', '.join(map(str, fitting))}); pass --val-size N")


def place_history(history: pd.DataFrame, out_dir, val_size: int | None = None,
                  arm: str | None = None, level: float = 0.95,
                  settings: Settings | None = None) -> Placement:
    """Where one history falls among the store's reruns with the same validation size.

    history: tidy epochs table (epoch, val_accuracy, optionally val_loss, learning_rate), as
    read by valstat.history.read_history. val_size: validation images (None: the one store
    size the accuracies fit). arm: only that arm's runs (None: the store's one arm of that size;
    several arms are different recipes, so pooling them is refused).
    Returns a valstat.results.Placement (to_dict(): the "against" part of `diagnose --json`).
    The reruns are the store's counted runs (valstat.core: not diverged unless
    settings.count_diverged); collapse epochs come from the run table (settings.collapse_threshold).
    ValstatError: no runs, no runs with that validation size, unknown arm, several arms and no
    `arm`, history off-lattice.
    """
    from valstat.store import load_tables

    settings = settings or Settings(level=level)
    level = settings.level
    history = validate_epochs(history, "history")
    tables = load_tables(out_dir)
    if tables.runs.empty or tables.epochs.empty:
        raise ValstatError(f"the store in {out_dir} holds no finished runs to compare with")
    core = build_core(tables.runs, tables.epochs, tables.predictions, dict(tables.meta or {}), settings)
    runs = core.counted
    if arm is not None:
        if arm not in set(tables.runs["arm"]):
            raise ValstatError(f"the store in {out_dir} has no arm {arm!r} (arms: "
                            f"{', '.join(sorted(set(tables.runs['arm'])))})")
        runs = runs[runs["arm"] == arm]
    sizes = sorted({int(v) for v in pd.to_numeric(runs["n_val"], errors="coerce").dropna()})
    if runs.empty:
        raise ValstatError(f"the store in {out_dir} holds no finished runs to compare with")
    if not sizes:
        raise ValstatError(f"the runs in {out_dir} do not record their validation size")
    accuracy = history["val_accuracy"].to_numpy(dtype=float)
    n = _choose_val_size(accuracy, sizes, val_size, out_dir)
    if not _fits(accuracy, n):
        raise ValstatError(f"the history's val_accuracy values are not whole numbers of images "
                        f"out of {n}; check --val-size")
    if n not in sizes:
        raise ValstatError(f"the store in {out_dir} has no runs with {n} validation images "
                        f"(its runs have {', '.join(map(str, sizes))}); compare with reruns "
                        "scored on as many images as the history")
    chosen = runs[pd.to_numeric(runs["n_val"], errors="coerce") == n]
    arms = sorted(set(chosen["arm"]))
    if len(arms) > 1:   # arms are different recipes: their runs pooled describe no one model
        raise ValstatError(f"the store in {out_dir} has {len(arms)} arms with {n} validation "
                           f"images ({', '.join(arms)}); compare with one of them: --arm {arms[0]}")
    reruns = tables.epochs[tables.epochs["run_id"].isin(chosen["run_id"])]
    reruns = reruns.sort_values(["run_id", "epoch"])

    placed = place_curve(history, reruns, level)
    epochs = [EpochPlacement(epoch=int(epoch), **{row.pop("metric"): PlacedMetric(**row) for row in
                                                  to_plain(group.drop(columns=["epoch", "outside_rate"]))})
              for epoch, group in placed.groupby("epoch", sort=True)]
    outside = {metric: _outside_count(part) for metric, part in placed.groupby("metric", sort=False)}

    per_run = dict(tuple(reruns.groupby("run_id")))
    falls = [largest_fall(g["val_accuracy"].to_numpy(dtype=float), n) for g in per_run.values()
             if np.isfinite(g["val_accuracy"]).all()]
    drop = PlacedValue(**place_value(largest_fall(accuracy, n), falls, level, whole=True)) if falls else None

    own_run = history_core(history, n, settings).runs.iloc[0]
    own = None if pd.isna(own_run["collapse_epoch"]) else int(own_run["collapse_epoch"])
    recorded = "learning_rate" in history
    with_rate = chosen[chosen["lr_initial"].notna()]
    collapsed = [int(e) for e in with_rate["collapse_epoch"].dropna()]
    placed_epoch = PlacedValue(**place_value(own, collapsed, level, whole=True)) \
        if own is not None and collapsed else None
    typical = None
    if recorded and len(with_rate):
        # typical: at least (1 - level)/2 of the reruns share its fate (collapsed or not), and
        # a collapse epoch inside the collapsed reruns' band; not typical gets no verdict
        # (None) from fewer than verdict_reruns reruns, as in place_value
        share = len(collapsed) / len(with_rate)
        if own is None:
            share = 1 - share
        epoch_typical = True if placed_epoch is None else placed_epoch.typical
        typical = bool(share >= (1 - level) / 2 and epoch_typical)
        if not typical and (epoch_typical is None or len(with_rate) < verdict_reruns(level)):
            typical = None
    collapse = CollapsePlacement(epoch=own, recorded=recorded, reruns_collapsed=len(collapsed),
                                 reruns_with_rate=len(with_rate), placed=placed_epoch,
                                 typical=typical)
    return Placement(store=str(out_dir), val_size=n, arms=arms,
                     reruns=int(len(chosen)), level=level,
                     collapse_threshold=settings.collapse_threshold, epochs=epochs,
                     outside=outside, largest_drop=drop, lr_collapse=collapse)


def _outside_count(part: pd.DataFrame) -> OutsideCount:
    """Epochs outside the band, of those compared, and how many a run like the reruns would
    leave it in (the sum of the epochs' leave-one-out rates; None where some epoch has < 2)."""
    compared = part["outside"].notna()
    rates = part.loc[compared, "outside_rate"].to_numpy(dtype=float)
    return OutsideCount(epochs=int((part["outside"].fillna(0) != 0).sum()), compared=int(compared.sum()),
                        expected=float(rates.sum()) if compared.any() and np.isfinite(rates).all() else None)


def expected_outside(count: OutsideCount, strings: dict) -> str:
    """How many epochs a run like the reruns would leave the band in, from a strings section
    with outside_expected and outside_expected_none ([placement] here, [against] in the report)."""
    if count.expected is None:
        return strings["outside_expected_none"]
    return strings["outside_expected"].format(expected=f"{count.expected:.1f}")


def verdict(typical: bool | None, reruns: int, level: float, strings: dict) -> str:
    """typical / unusual, or why there is no verdict with so few reruns, from a strings section
    with typical, unusual and no_verdict ([placement] here, [against] in the report)."""
    if typical is not None:
        return strings["typical" if typical else "unusual"]
    return strings["no_verdict"].format(reruns=reruns, share=f"{2 / (reruns + 1):.0%}",
                                        needed=verdict_reruns(level), level=f"{100 * level:g}%")


def format_placement(result: Placement, lang: str = "en") -> str:
    """Text for the terminal: per-epoch percentiles and the verdicts on drop and collapse
    ([placement] strings of valstat/report/{en,zh}.toml)."""
    S = Strings(lang)
    P = S.section("placement")

    def percentile(value) -> str:
        return P["missing"] if value is None else P["percentile"].format(p=S.ordinal(round(value)))

    level = f"{100 * result.level:g}%"
    lines = [P["head"].format(reruns=S.count("reruns", result.reruns), store=result.store, n=result.val_size,
                              arms=", ".join(result.arms), level=level)]
    lines.append(f"{P['col_epoch']:>5}  {P['col_acc']:>7}  {P['col_pct']:>5}  {P['col_band']:<15}  "
                 f"{P['col_loss']:>8}  {P['col_pct']:>5}  {P['col_band']}")
    for row in result.epochs:
        cells = []
        for item, fmt in ((row.val_accuracy, "{:.1%}"), (row.val_loss, "{:.3f}")):
            if item is None:
                cells.append(f"{'':>7}  {'':>5}  {'':<15}")
                continue
            band = P["no_reruns"] if item.low is None else \
                f"{fmt.format(item.low)}-{fmt.format(item.high)}"
            flag = {-1: P["below"], 1: P["above"]}.get(item.outside, "")
            cells.append(f"{fmt.format(item.value):>7}  {percentile(item.percentile):>5}  "
                         f"{band + flag:<15}")
        lines.append(f"{row.epoch:>5}  " + "  ".join(cells).rstrip())
    for metric in ("val_accuracy", "val_loss"):
        count = result.outside.get(metric)
        if count is not None:
            lines.append(P[f"outside_{metric}"].format(level=level, out=count.epochs,
                                                       epochs=count.compared) + expected_outside(count, P))
    drop = result.largest_drop
    if drop is not None:
        lines.append(P["drop"].format(images=f"{drop.value:.0f}", percentile=percentile(drop.percentile),
                                      median=f"{drop.median:g}", level=level, low=f"{drop.low:g}",
                                      high=f"{drop.high:g}",
                                      verdict=verdict(drop.typical, drop.reruns, result.level, P)))
    collapse = result.lr_collapse
    if not collapse.recorded:
        lines.append(P["no_rate"])
    else:
        own = P["never"] if collapse.epoch is None else P["at_epoch"].format(epoch=collapse.epoch)
        text = P["collapse"].format(threshold=f"{result.collapse_threshold:.0%}", own=own,
                                    collapsed=collapse.reruns_collapsed,
                                    reruns=collapse.reruns_with_rate)
        placed = collapse.placed
        if placed is not None:
            text += P["placed"].format(median=f"{placed.median:g}", level=level, low=f"{placed.low:g}",
                                       high=f"{placed.high:g}", percentile=percentile(placed.percentile))
        if collapse.reruns_with_rate:
            text += P["verdict"].format(verdict=verdict(collapse.typical, collapse.reruns_with_rate,
                                                        result.level, P))
        lines.append(text)
    return "\n".join(lines) + "\n"
