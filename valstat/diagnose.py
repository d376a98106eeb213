"""`valstat diagnose`: explain one training history with statistics instead of guesses.

:func:`diagnose` takes a tidy epochs table (from :func:`valstat.history.read_history`) and returns
a frozen :class:`valstat.results.Diagnosis` (its parts: EpochRow, LargestDrop, WholeRunChange,
CutsAfterTies, OptimismBound; ``to_dict()`` is ``valstat diagnose --json``: plain JSON types, NaN
as null); :func:`format_diagnosis` turns it into text for the terminal, in English or Chinese.
Accuracies, bands and intervals are fractions; epochs are the history's own epoch numbers; counts
are images. All statistics come from :mod:`valstat.stats` and the run table of
:mod:`valstat.core`; this module only chooses what to ask, maps positions to the history's epoch
numbers and words the answer.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace

import numpy as np
import pandas as pd

from valstat.core import Settings, history_core
from valstat.core.plain import to_plain
from valstat.core.schedule import infer_patience
from valstat.errors import ValstatError
from valstat.history import validate_epochs
from valstat.report.text import Strings, p_short, pct, pts, short
from valstat.results import (CutsAfterTies, Diagnosis, EpochRow, LargestDrop, OptimismBound,
                             WholeRunChange)
from valstat.stats.dynamics import lr_cuts as lr_cuts_of
from valstat.stats.dynamics import plateau_cuts_after_ties

#: Largest validation size tried when inferring it from the accuracies.
MAX_INFERRED_VAL_SIZE = 1000
#: Power at which "within noise" is translated into the smallest drop the test detects.
DETECT_POWER = 0.8


def diagnose(epochs_df: pd.DataFrame, val_size: int | None = None, level: float = 0.95,
             settings: Settings | None = None) -> Diagnosis:
    """Diagnose one validation-accuracy curve (and its learning-rate schedule, if logged).

    Parameters
    ----------
    epochs_df : pandas.DataFrame
        Tidy epochs table: ``epoch`` and ``val_accuracy``, optionally ``loss``, ``accuracy``,
        ``val_loss``, ``learning_rate`` (as returned by :func:`valstat.history.read_history`).
    val_size : int, optional
        Number of validation images.  When omitted it is inferred as the smallest n for which
        every validation accuracy is a whole number of images (the true size is then a multiple
        of it), and ``val_size_inferred`` is true.
    level : float
        Confidence level for bands and the noise tests (default 0.95).
    settings : valstat.core.Settings, optional
        Level and learning-rate collapse threshold; overrides ``level`` when given.

    Returns
    -------
    valstat.results.Diagnosis
        Frozen; ``to_dict()`` gives the JSON of ``valstat diagnose --json``.

    Raises
    ------
    ValstatError
        Bad table, a ``val_size`` the accuracies are not whole numbers of images of, or (without
        ``val_size``) accuracies that fit no validation size up to 1000 images.
    """
    from valstat.stats import curve_changes, expected_max_noise, infer_val_size, largest_drop, lattice_step
    from valstat.stats.lattice import LATTICE_TOLERANCE
    from valstat.stats.selection import plateau_epochs
    from valstat.stats.sizes import detectable_drop

    settings = settings or Settings(level=level)
    level = settings.level
    epochs = validate_epochs(epochs_df)
    labels = epochs["epoch"].to_numpy()
    accuracy = epochs["val_accuracy"].to_numpy(dtype=float)

    # -- validation size ----------------------------------------------------------------------
    if val_size is None:
        try:
            n = infer_val_size(accuracy, max_n=MAX_INFERRED_VAL_SIZE)
        except ValstatError:
            raise ValstatError(
                f"cannot infer the validation size: no validation set of up to "
                f"{MAX_INFERRED_VAL_SIZE} images makes every val_accuracy a whole number of "
                f"images (epoch {int(labels[0])} has {float(accuracy[0])!r}; were accuracies "
                "averaged over batches, or rounded?); pass --val-size N with the number of "
                "validation images") from None
        if n == 1:
            raise ValstatError(
                "cannot infer the validation size: every val_accuracy is 0 or 1, which fits any "
                "number of images; pass --val-size N with the number of validation images")
        inferred = True
    else:
        whole = isinstance(val_size, (int, np.integer)) or (
            isinstance(val_size, (float, np.floating)) and float(val_size).is_integer())
        if isinstance(val_size, (bool, np.bool_)) or not whole or val_size < 1:
            raise ValstatError(f"--val-size must be a whole number of images >= 1, got {val_size!r}")
        n = int(val_size)
        scaled = accuracy * n
        off = np.abs(scaled - np.rint(scaled)) > LATTICE_TOLERANCE
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise ValstatError(
                f"val_accuracy {accuracy[i]:.6g} at epoch {int(labels[i])} is not a whole number "
                f"of images out of {n} ({accuracy[i]:.6g} x {n} = {scaled[i]:.4g}); check "
                "--val-size (leave it out to infer it)")
        inferred = False
    # a diverged run's accuracies are still counts of the same images (used above), but not
    # the curve of a model: the analysis below ends where the divergence began
    epochs, diverged_epoch, loss_not_finite = _before_divergence(epochs)
    labels = epochs["epoch"].to_numpy()
    accuracy = epochs["val_accuracy"].to_numpy(dtype=float)

    # -- lattice and epoch-to-epoch changes ---------------------------------------------------
    changes = curve_changes(accuracy, n, level=level)
    changes["epoch"] = labels  # stats numbers rows from 0; use the history's own epochs
    tested = changes["within_noise"].notna()
    beyond = int((changes["within_noise"][tested] == False).sum())  # noqa: E712 (nullable)

    # what "within noise" could have detected: the smallest drop from the previous epoch's
    # accuracy that Fisher's test detects with 80% power (one computation per distinct count)
    k = changes["k"].to_numpy(dtype=int)
    detect = {int(c): detectable_drop(n, 1 - level, DETECT_POWER, p=c / n) for c in np.unique(k[:-1])}
    rows = []
    for i, row in enumerate(changes.itertuples(index=False)):
        within = None if pd.isna(row.within_noise) else bool(row.within_noise)
        change = None if pd.isna(row.change_images) else int(row.change_images)
        rows.append(EpochRow(epoch=int(row.epoch), val_accuracy=float(row.val_accuracy), k=int(row.k),
                             low=float(row.low), high=float(row.high), change_images=change,
                             p_value=to_plain(row.p_value), within_noise=within,
                             detectable_drop=detect[int(k[i - 1])] if within else None))
    first_to_last = None
    if len(epochs) > 1:
        # the whole run as one change: first epoch against last, with the same test
        ends = curve_changes(accuracy[[0, -1]], n, level=level).iloc[1]
        first_to_last = WholeRunChange(from_epoch=int(labels[0]), to_epoch=int(labels[-1]),
                                       images=int(ends["change_images"]), p_value=float(ends["p_value"]),
                                       within_noise=bool(ends["within_noise"]))

    # -- the run table of this one history (valstat.core, as for a store) ------------------------
    run = to_plain(history_core(epochs, n, settings).runs.iloc[0].to_dict())
    lr_cuts, ties = None, None
    if run["lr_initial"] is not None:
        rate = epochs["learning_rate"].to_numpy(dtype=float)
        lr_cuts = [int(labels[c]) for c in lr_cuts_of(rate)]   # positions -> the history's epochs
        ties = _cuts_after_ties(epochs, rate)

    # -- the optimism of picking the best epoch -----------------------------------------------------
    # Null model: the epochs plausibly at the plateau (accuracy not below the best epoch's by
    # Fisher's test at `level`) are one model measured with fresh binomial noise on n images;
    # its accuracy is their mean. Epochs still rising are left out (pooling them under-states
    # the accuracy and over-counts the epochs: 14.3 points against a true 11.4 in a simulated
    # rising curve). Real epochs share images and weights (correlated scores), which makes
    # the real optimism smaller: without per-image predictions this is an upper bound.
    plateau = plateau_epochs(k, n, level)
    on_plateau = float(np.mean(k[plateau]) / n)
    noise = expected_max_noise(n, int(plateau.sum()), on_plateau)
    optimism = OptimismBound(**to_plain({
        "true_accuracy": on_plateau, "epochs": plateau.sum(), "epochs_total": len(epochs),
        "plateau_epochs": labels[np.flatnonzero(plateau)], "val_size": n,
        "expected_max": noise["expected_max"], "low": noise["low"], "high": noise["high"],
        "upper_bound": True,
        "assumption": ("epochs whose accuracy is within noise of the best (Fisher) are one model "
                       "measured independently on n images at their mean accuracy; real epochs "
                       "are correlated, so this is an upper bound")}))

    val_loss = (epochs["val_loss"].to_numpy(dtype=float) if "val_loss" in epochs
                else np.full(len(epochs), np.nan))
    drop = largest_drop(changes, level=level)
    result = Diagnosis(
        val_size=n, val_size_inferred=inferred, lattice_step=float(lattice_step(n)), level=level,
        epochs=rows, noise_test=Strings("en")["diagnose.noise_test"],
        changes_tested=int(tested.sum()), changes_beyond_noise=beyond,
        largest_drop=None if drop is None else LargestDrop.from_stats(drop),
        first_to_last=first_to_last, detect_power=DETECT_POWER,
        detectable_drop_last=detectable_drop(n, 1 - level, DETECT_POWER, p=float(k[-1]) / n),
        lr_collapse_epoch=_whole(run["collapse_epoch"]),
        lr_epochs_after_collapse=_whole(run["collapse_epochs_after"]),
        lr_initial=run["lr_initial"], lr_final=run["lr_final"], lr_cuts=lr_cuts,
        lr_cuts_after_ties=ties, lr_collapse_threshold=settings.collapse_threshold,
        best_val_accuracy_epoch=_whole(run["best_epoch"]),
        best_val_loss_epoch=None if np.isnan(val_loss).all() else int(labels[int(np.nanargmin(val_loss))]),
        best_epoch_expected_optimism=to_plain(noise["expected_optimism"]), best_epoch_optimism=optimism,
        lr_at_collapse=run["collapse_lr"], has_val_loss=bool(np.isfinite(val_loss).any()),
        val_loss_not_finite=[int(e) for e in labels[~np.isfinite(val_loss)]] if "val_loss" in epochs else [],
        loss_not_finite=loss_not_finite, diverged_epoch=diverged_epoch, verdict="")
    return replace(result, verdict=verdict(result))


def _before_divergence(epochs: pd.DataFrame) -> tuple[pd.DataFrame, int | None, list]:
    """(epochs, diverged_epoch, loss_not_finite). Where the training loss is NaN or infinite
    from some epoch to the end, the run diverged there: its weights are broken from that epoch
    on, so its accuracies say nothing about noise or the schedule, and (as in a store, where a
    diverged run's epochs end there) only the epochs before it are kept. loss_not_finite: the
    other epochs with a NaN or infinite training loss (the run recovered after them)."""
    if "loss" not in epochs:
        return epochs, None, []
    broken = ~np.isfinite(epochs["loss"].to_numpy(dtype=float))
    labels = epochs["epoch"].to_numpy()
    finite_after = np.flatnonzero(~broken)
    first = int(finite_after[-1]) + 1 if finite_after.size else 0   # start of the broken tail
    if first == len(epochs):
        return epochs, None, [int(e) for e in labels[broken]]
    if first == 0:
        raise ValstatError(f"the training loss is NaN or infinite in every epoch (from epoch "
                           f"{int(labels[0])}): the run diverged at once, so there is no curve to "
                           "diagnose (lower the learning rate and train again)")
    return (epochs.iloc[:first].reset_index(drop=True), int(labels[first]),
            [int(e) for e in labels[:first][broken[:first]]])


def _whole(value: float | None) -> int | None:
    """An epoch or count from the run table (a float column, NaN already None) as an int."""
    return None if value is None else int(value)


def _cuts_after_ties(epochs: pd.DataFrame, rate: np.ndarray) -> CutsAfterTies | None:
    """Were the rate cuts ReduceLROnPlateau(monitor="val_accuracy") reacting to mere ties?

    The history does not record the callback's settings, so the patience is inferred
    (valstat.core.schedule.infer_patience, as for recorded stores). ``consistent`` is false
    when no patience fits: then the schedule was not (only) ReduceLROnPlateau on
    val_accuracy, and the verdict says nothing about ties. None when the rate was never cut.
    """
    if len(lr_cuts_of(rate)) == 0:
        return None
    patience = infer_patience(epochs["val_accuracy"].to_numpy(dtype=float), rate, "max")
    found = plateau_cuts_after_ties(epochs, monitor="val_accuracy", patience=patience or 1, mode="max")
    return CutsAfterTies(monitor="val_accuracy", patience_inferred=patience, cuts=found["cuts"],
                         after_ties_only=found["after_ties_only"], after_worse=found["after_worse"],
                         other=found["other"], consistent=patience is not None)


# ---------------------------------------------------------------------------------------------
# words: every sentence from the [diagnose] strings of valstat/report/{en,zh}.toml


def verdict(r: Diagnosis, lang: str = "en") -> str:
    """Plain-language summary a student can act on, built only from the diagnosis' other fields."""
    S = Strings(lang)
    D = S.section("diagnose")
    n = r.val_size
    rows = r.epochs
    last = rows[-1]
    parts = []
    if r.diverged_epoch is not None:
        parts.append(D["diverged"].format(e=r.diverged_epoch, epochs=S.count("epochs", len(rows))))

    size = S.images(n) + (D["inferred"] if r.val_size_inferred else "")
    parts.append(D["lattice"].format(size=size, step=pts(1 / n), k=last.k, n=n, acc=pct(last.val_accuracy),
                                     level=f"{100 * r.level:g}%", low=pct(last.low, 0),
                                     high=pct(last.high, 0)))

    if r.changes_tested:
        beyond, tested = r.changes_beyond_noise, r.changes_tested
        key = "changes_single" if tested == 1 else "changes_one" if beyond == 1 else "changes_many"
        sentence = D[key].format(beyond=beyond, tested=tested, n=n)
        drop = r.largest_drop
        if drop is None:
            sentence += D["never_fell"]
        else:
            lost = -drop.images
            sentence += D["drop"].format(images=S.images(lost), points=pts(lost / n), e0=drop.from_epoch,
                                         e1=drop.to_epoch)
            moves = S.count("moves", drop.scanned)
            scan = D["scan"].format(p=p_short(drop.p_value), p_adj=p_short(drop.p_adjusted), moves=moves)
            if not drop.within_noise:
                sentence += D["drop_beyond"].format(scan=scan, e1=drop.to_epoch)
            elif not drop.within_noise_unadjusted:   # beyond noise as one move, not as the largest
                alone = dict(p=p_short(drop.p_value), p_adj=p_short(drop.p_adjusted), moves=moves, n=n)
                sentence += (D["drop_alone"].format(**alone, flagged=S.images(drop.smallest_flagged))
                             if drop.smallest_flagged is not None else D["drop_alone_none"].format(**alone))
            elif drop.smallest_flagged is not None:
                sentence += D["drop_within"].format(scan=scan, n=n, moves=moves,
                                                    flagged=S.images(drop.smallest_flagged))
            else:
                sentence += D["drop_within_none"].format(scan=scan, n=n, moves=moves)
        parts.append(sentence[0].upper() + sentence[1:])
        last_detect = r.detectable_drop_last
        acc = pct(last.val_accuracy)
        parts.append(D["detect"].format(n=n, acc=acc, images=S.images(last_detect)) if last_detect is not None
                     else D["detect_none"].format(n=n, acc=acc))
        whole = r.first_to_last
        if whole.images:
            parts.append(D["whole"].format(
                moved=D["rose" if whole.images > 0 else "fell"], k0=rows[0].k, k1=last.k, n=n,
                e0=whole.from_epoch, e1=whole.to_epoch, images=S.images(abs(whole.images)),
                verdict=D["within" if whole.within_noise else "beyond"], p=p_short(whole.p_value)))

    if last.k == 0:
        parts.append(D["zero"])

    if r.lr_initial is None:
        parts.append(D["no_lr"])
    elif r.lr_collapse_epoch is not None:
        e, after = r.lr_collapse_epoch, r.lr_epochs_after_collapse
        rate_then = r.lr_at_collapse
        tail = [row.k for row in rows if row.epoch >= e]
        sentence = D["lr_down"].format(rate=short(rate_then), share=short(100 * rate_then / r.lr_initial),
                                       initial=short(r.lr_initial), e=e)
        if after >= 2:
            sentence += D["lr_ran"].format(after=after, e=e, last=rows[-1].epoch)
            sentence += D["lr_flat" if after >= 3 and len(set(tail)) == 1 else "lr_still"]
        else:
            sentence += D["lr_last"]
        parts.append(sentence)
    else:
        parts.append(D["lr_never"].format(threshold=f"{r.lr_collapse_threshold:.0%}",
                                          initial=short(r.lr_initial), final=short(r.lr_final)))
    ties = r.lr_cuts_after_ties
    if ties and ties.consistent and ties.cuts:
        p = ties.patience_inferred
        epochs = S.count("epochs", p)
        sentence = D["ties_many" if ties.cuts > 1 else "ties_one"].format(cuts=ties.cuts, p=p, epochs=epochs)
        if ties.after_ties_only:
            sentence += D["ties_only"].format(ties=ties.after_ties_only, cuts=ties.cuts)
        parts.append(sentence + D["ties_advice"].format(n=n))

    if r.has_val_loss:
        parts.append(D["loss"])

    ba, bl = r.best_val_accuracy_epoch, r.best_val_loss_epoch
    if ba is not None:
        sentence = D["peak"].format(e=ba) + (D["peak_loss"].format(e=bl) if bl is not None else D["peak_end"])
        optimism, basis = r.best_epoch_expected_optimism, r.best_epoch_optimism
        if optimism is not None and basis.epochs > 1:
            sentence += D["optimism"].format(epochs=basis.epochs, acc=pct(basis.true_accuracy), n=n,
                                             points=pts(optimism))
        parts.append(sentence)

    if r.val_size_inferred:
        parts.append(D["size_inferred"].format(n=n))
    return D["joiner"].join(parts)


def _epoch_list(D, epochs: list) -> str:
    """'epoch 2' / 'epochs 2, 4' (the diagnose strings' at_one / at_many)."""
    return D["at_one" if len(epochs) == 1 else "at_many"].format(epochs=", ".join(map(str, epochs)))


def format_diagnosis(result: Diagnosis, width: int = 100, lang: str = "en") -> str:
    """Text for the terminal: the per-epoch table, the findings and the verdict."""
    S = Strings(lang)
    D = S.section("diagnose")
    n = result.val_size
    level = result.level
    inferred = D["inferred"] if result.val_size_inferred else ""
    lines = [D["head"].format(epochs=S.count("epochs", len(result.epochs)), n=n, inferred=inferred,
                              step=pts(result.lattice_step)), ""]
    band = D["col_band"].format(level=f"{100 * level:g}%")
    lines.append(f"{D['col_epoch']:>5}  {D['col_acc']:>7}  {D['col_images']:>9}  {band:<19}  "
                 f"{D['col_change']:>6}  {D['col_noise']}")
    drop = result.largest_drop
    scan = None if drop is None else dict(p=p_short(drop.p_value), p_adj=p_short(drop.p_adjusted),
                                          moves=S.count("moves", drop.scanned))
    for row in result.epochs:
        change, noise = "", ""
        if row.change_images is not None:
            change = f"{row.change_images:+d}" if row.change_images else "0"
            if drop is not None and row.epoch == drop.to_epoch and drop.within_noise \
                    and not drop.within_noise_unadjusted:   # beyond noise alone, not as the largest
                noise = D["row_alone"].format(**scan)
            elif row.within_noise is not None:
                word = D["row_within" if row.within_noise else "row_beyond"]
                noise = f"{word} ({p_short(row.p_value)})" if row.p_value is not None else word
                if row.within_noise:
                    detect = row.detectable_drop
                    noise += ", " + (D["row_detect"].format(images=detect) if detect is not None
                                     else D["row_detect_none"])
        images = f"{row.k}/{n}"
        interval = f"{pct(row.low)} - {pct(row.high)}"
        lines.append(f"{row.epoch:>5}  {pct(row.val_accuracy):>7}  {images:>9}  "
                     f"{interval:<19}  {change:>6}  {noise}".rstrip())
    lines.append(D["noise_line"].format(test=D["noise_test"], alpha=f"{100 * (1 - level):g}%"))
    lines.append(D["detect_line"])
    lines.append("")

    if drop is None:
        lines.append(D["drop_none"])
    else:
        interval = D["drop_interval"].format(level=f"{100 * level:g}%", low=f"{100 * drop.low:+.1f}",
                                             high=f"{100 * drop.high:+.1f}")
        verdict_key = ("row_drop_beyond" if not drop.within_noise else
                       "row_drop_alone" if not drop.within_noise_unadjusted else "row_drop_within")
        lines.append(D["drop_line"].format(
            images=S.images(-drop.images), points=pts(-drop.images / n), e0=drop.from_epoch,
            e1=drop.to_epoch, verdict=D[verdict_key].format(**scan), interval=interval))
    if result.lr_initial is None:
        lines.append(D["lr_absent"])
    else:
        cuts = result.lr_cuts
        collapse = ""
        if result.lr_collapse_epoch is not None:
            collapse = D["lr_collapse"].format(threshold=f"{result.lr_collapse_threshold:.0%}",
                                               e=result.lr_collapse_epoch,
                                               after=S.count("epochs", result.lr_epochs_after_collapse))
        lines.append(D["lr_line"].format(
            initial=short(result.lr_initial, 3), final=short(result.lr_final, 3),
            cuts=S.count("cuts", len(cuts)),
            at=D["cuts_at_one" if len(cuts) == 1 else "cuts_at_many"].format(epochs=", ".join(map(str, cuts)))
            if cuts else "", collapse=collapse))
    best = []
    if result.best_val_accuracy_epoch is not None:
        best.append(D["best_acc"].format(e=result.best_val_accuracy_epoch))
    if result.best_val_loss_epoch is not None:
        best.append(D["best_loss"].format(e=result.best_val_loss_epoch))
    if best:
        lines.append(D["best_line"].format(items=", ".join(best)))
    if result.diverged_epoch is not None:
        lines.append(D["diverged_line"].format(e=result.diverged_epoch))
    if result.loss_not_finite:
        lines.append(D["train_loss_not_finite"].format(epochs=_epoch_list(D, result.loss_not_finite)))
    bad = result.val_loss_not_finite
    if bad:
        lines.append(D["loss_not_finite"].format(epochs=_epoch_list(D, bad)))
    basis = result.best_epoch_optimism
    if result.best_epoch_expected_optimism is not None and basis.epochs > 1:
        lines.append(D["bias"].format(points=pts(result.best_epoch_expected_optimism),
                                      epochs=basis.epochs, n=n))
    lines.append("")
    lines.append(D["verdict"])
    lines.extend(textwrap.wrap(verdict(result, lang), width=width, initial_indent="  ", subsequent_indent="  "))
    return "\n".join(lines) + "\n"
