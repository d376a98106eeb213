"""`valstat diagnose`: explain one training history with statistics instead of guesses.

:func:`diagnose` takes a tidy epochs table (from :func:`valstat.history.read_history`) and returns
a dict of plain JSON types (no numpy, NaN as ``None``); :func:`format_diagnosis` turns that dict
into text for the terminal.  All statistics come from :mod:`valstat.stats`; this module only
chooses what to ask, maps positions to the history's epoch numbers and words the answer.

Keys of the result (stable; more may be added).  Accuracies, bands and intervals are fractions;
epochs are the history's own epoch numbers; counts are images.

* ``val_size`` (int), ``val_size_inferred`` (bool), ``lattice_step`` (1/val_size), ``level``
* ``epochs``: one dict per epoch: ``epoch``, ``val_accuracy`` (k/n), ``k`` (images right),
  ``low``, ``high`` (Wilson band), ``change_images`` (k minus the previous epoch's k; null at the
  first epoch), ``p_value``, ``within_noise`` (null at the first epoch)
* ``noise_test`` (text), ``changes_tested``, ``changes_beyond_noise`` (counts of epoch-to-epoch
  changes)
* ``largest_drop``: ``from_epoch``, ``to_epoch``, ``images`` (negative), ``within_noise``
  (after a Bonferroni adjustment for scanning every move), ``p_value`` (this move),
  ``p_adjusted``, ``scanned``, ``within_noise_unadjusted``, ``smallest_flagged`` (the smallest
  loss in images the adjusted test would flag), ``low``, ``high`` (simultaneous interval for the
  change in accuracy); null if it never fell (see :func:`valstat.stats.largest_drop`)
* ``first_to_last``: ``from_epoch``, ``to_epoch``, ``images``, ``p_value``, ``within_noise``: the
  whole run as one change, same test; null for a single epoch
* ``lr_collapse_epoch`` (first epoch below 1% of the first rate), ``lr_epochs_after_collapse``
  (epochs from it to the end, counting it), ``lr_initial``, ``lr_final``, ``lr_cuts`` (epochs whose
  rate is below the previous epoch's), ``lr_cuts_after_ties`` (see :func:`_cuts_after_ties`): all
  null without a learning-rate column
* ``best_val_loss_epoch``, ``best_val_accuracy_epoch`` (first on ties; null without the column)
* ``best_epoch_expected_optimism``: an upper bound of the amount by which the best epoch's val
  accuracy exceeds its true accuracy from noise alone: the expected best of the plateau epochs
  (those within noise of the best, Fisher) measured independently (see ``best_epoch_optimism``
  for the basis: ``true_accuracy`` = the plateau epochs' mean, ``epochs`` (on the plateau),
  ``epochs_total``, ``plateau_epochs``, ``val_size``, ``expected_max``, ``low``/``high`` =
  2.5/97.5 percentiles of one run's optimism, ``upper_bound`` (true), ``assumption``)
* ``verdict``: plain-language summary
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from valstat.core import Settings, history_core
from valstat.core.plain import to_plain
from valstat.core.schedule import infer_patience
from valstat.stats.dynamics import lr_cuts as lr_cuts_of
from valstat.errors import ValstatError
from valstat.history import validate_epochs

#: Largest validation size tried when inferring it from the accuracies.
MAX_INFERRED_VAL_SIZE = 1000
#: How epoch-to-epoch changes are tested (curve_changes without per-image predictions).
NOISE_TEST = ("Fisher's exact test of k/n against the previous epoch's k/n as independent "
              "binomials (conservative: the same images are scored twice)")


def diagnose(epochs_df: pd.DataFrame, val_size: int | None = None, level: float = 0.95,
             settings: Settings | None = None) -> dict:
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
    dict
        Plain JSON types only; see the module docstring for the keys.

    Raises
    ------
    ValstatError
        Bad table, a ``val_size`` the accuracies are not whole numbers of images of, or (without
        ``val_size``) accuracies that fit no validation size up to 1000 images.
    """
    from valstat.stats import (curve_changes, expected_max_noise, infer_val_size, largest_drop,
                               lattice_step, plateau_cuts_after_ties)
    from valstat.stats.dynamics import lr_cuts
    from valstat.stats.lattice import LATTICE_TOLERANCE
    from valstat.stats.selection import plateau_epochs

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

    # -- lattice and epoch-to-epoch changes ---------------------------------------------------
    changes = curve_changes(accuracy, n, level=level)
    changes["epoch"] = labels  # stats numbers rows from 0; use the history's own epochs
    drop = largest_drop(changes, level=level)
    tested = changes["within_noise"].notna()
    beyond = int((changes["within_noise"][tested] == False).sum())  # noqa: E712 (nullable)

    rows = []
    for row in changes.itertuples(index=False):
        change = None if pd.isna(row.change_images) else int(row.change_images)
        rows.append({
            "epoch": row.epoch, "val_accuracy": row.val_accuracy, "k": row.k,
            "low": row.low, "high": row.high, "change_images": change,
            "p_value": row.p_value, "within_noise": row.within_noise,
        })

    result = {
        "val_size": n,
        "val_size_inferred": inferred,
        "lattice_step": lattice_step(n),
        "level": level,
        "epochs": rows,
        "noise_test": NOISE_TEST,
        "changes_tested": int(tested.sum()),
        "changes_beyond_noise": beyond,
        "largest_drop": drop,
        "first_to_last": None,
    }
    if len(epochs) > 1:
        # the whole run as one change: first epoch against last, with the same test
        ends = curve_changes(accuracy[[0, -1]], n, level=level).iloc[1]
        result["first_to_last"] = {
            "from_epoch": labels[0], "to_epoch": labels[-1],
            "images": int(ends["change_images"]), "p_value": ends["p_value"],
            "within_noise": bool(ends["within_noise"]),
        }

    # -- the run table of this one history (valstat.core, as for a store) ------------------------
    run = history_core(epochs, n, settings).runs.iloc[0]
    result.update({"lr_collapse_epoch": None, "lr_epochs_after_collapse": None,
                   "lr_initial": None, "lr_final": None, "lr_cuts": None,
                   "lr_cuts_after_ties": None, "lr_collapse_threshold": settings.collapse_threshold})
    if pd.notna(run["lr_initial"]):
        rate = epochs["learning_rate"].to_numpy(dtype=float)
        cuts = [int(c) for c in lr_cuts(rate)]  # positions; reported as the history's epochs
        result["lr_initial"] = run["lr_initial"]
        result["lr_final"] = run["lr_final"]
        result["lr_cuts"] = [labels[c] for c in cuts]
        if pd.notna(run["collapse_epoch"]):
            result["lr_collapse_epoch"] = int(run["collapse_epoch"])
            result["lr_epochs_after_collapse"] = int(run["collapse_epochs_after"])
        result["lr_cuts_after_ties"] = _cuts_after_ties(epochs, rate, plateau_cuts_after_ties)

    # -- best epochs and the optimism of picking one ------------------------------------------
    result["best_val_accuracy_epoch"] = int(run["best_epoch"]) if pd.notna(run["best_epoch"]) else None
    result["best_val_loss_epoch"] = (labels[int(np.nanargmin(epochs["val_loss"].to_numpy(dtype=float)))]
                                     if "val_loss" in epochs and epochs["val_loss"].notna().any() else None)
    # Null model: the epochs plausibly at the plateau (accuracy not below the best epoch's by
    # Fisher's test at `level`) are one model measured with fresh binomial noise on n images;
    # its accuracy is their mean. Epochs still rising are left out (pooling them under-states
    # the accuracy and over-counts the epochs: 14.3 points against a true 11.4 in a simulated
    # rising curve). Real epochs share images and weights (correlated scores), which makes
    # the real optimism smaller: without per-image predictions this is an upper bound.
    k = changes["k"].to_numpy(dtype=int)
    plateau = plateau_epochs(k, n, level)
    on_plateau = float(np.mean(k[plateau]) / n)
    noise = expected_max_noise(n, int(plateau.sum()), on_plateau)
    result["best_epoch_expected_optimism"] = noise.get("expected_optimism")
    result["best_epoch_optimism"] = {
        "true_accuracy": on_plateau, "epochs": int(plateau.sum()), "epochs_total": len(epochs),
        "plateau_epochs": [labels[i] for i in np.flatnonzero(plateau)], "val_size": n,
        "expected_max": noise.get("expected_max"), "low": noise.get("low"),
        "high": noise.get("high"), "upper_bound": True,
        "assumption": ("epochs whose accuracy is within noise of the best (Fisher) are one model "
                       "measured independently on n images at their mean accuracy; real epochs "
                       "are correlated, so this is an upper bound"),
    }

    result = to_plain(result)
    result["verdict"] = _verdict(result, epochs)
    return result


def _cuts_after_ties(epochs: pd.DataFrame, rate, plateau_cuts_after_ties) -> dict | None:
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
    return {
        "monitor": "val_accuracy", "patience_inferred": patience, "cuts": found["cuts"],
        "after_ties_only": found["after_ties_only"], "after_worse": found["after_worse"],
        "other": found["other"], "consistent": patience is not None,
    }


# ---------------------------------------------------------------------------------------------
# words


def _pct(fraction: float, digits: int = 1) -> str:
    return f"{100 * fraction:.{digits}f}%"


def _points(fraction: float) -> str:
    return f"{100 * fraction:.1f} points"


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}" if p < 0.1 else f"p={p:.2f}"


def _images(count: int) -> str:
    return f"{count} image" + ("" if abs(count) == 1 else "s")


def _verdict(r: dict, epochs: pd.DataFrame) -> str:
    """Plain-language summary a student can act on, built only from the result dict."""
    n = r["val_size"]
    level_pct = f"{100 * r['level']:g}%"
    rows = r["epochs"]
    last = rows[-1]
    parts = []

    size = f"{n} images" + (" (inferred)" if r["val_size_inferred"] else "")
    parts.append(
        f"Validation accuracy is measured on {size}, so it can only move in steps of "
        f"{_points(1 / n)}; the last epoch's {last['k']}/{n} ({_pct(last['val_accuracy'])}) has a "
        f"{level_pct} band of {_pct(last['low'], 0)}-{_pct(last['high'], 0)}.")

    if r["changes_tested"]:
        beyond, tested = r["changes_beyond_noise"], r["changes_tested"]
        sentence = (f"{beyond} of {tested} epoch-to-epoch changes "
                    f"{'is' if beyond == 1 else 'are'} larger than the noise of {n} images")
        drop = r["largest_drop"]
        if drop is None:
            sentence += "; validation accuracy never fell from one epoch to the next."
        else:
            lost = -drop["images"]
            where = f"between epochs {drop['from_epoch']} and {drop['to_epoch']}"
            sentence += f"; the largest drop, {_images(lost)} ({_points(lost / n)}) {where}, is "
            scan = (f"{_p(drop['p_value'])}; {_p(drop['p_adjusted'])} adjusted for scanning "
                    f"{drop['scanned']} moves for the largest")
            if drop["within_noise"]:
                sentence += f"within noise ({scan}): this test cannot tell it from noise, " + (
                    f"which does not show the model did not get worse: on {n} images it flags "
                    f"only drops of {_images(drop['smallest_flagged'])} or more."
                    if drop["smallest_flagged"] is not None else
                    f"which does not show the model did not get worse: on {n} images it could "
                    "flag no drop from there.")
            else:
                sentence += (f"larger than noise ({scan}): something real changed "
                             f"at epoch {drop['to_epoch']}.")
        parts.append(sentence[0].upper() + sentence[1:])
        whole = r["first_to_last"]
        if whole["images"]:
            first, final = rows[0]["k"], last["k"]
            moved = "rose" if whole["images"] > 0 else "fell"
            parts.append(
                f"Over the whole run it {moved} from {first}/{n} (epoch {whole['from_epoch']}) to "
                f"{final}/{n} (epoch {whole['to_epoch']}), {_images(abs(whole['images']))}: "
                + ("within noise" if whole["within_noise"] else "larger than noise")
                + f" ({_p(whole['p_value'])}).")

    if last["k"] == 0:
        parts.append("No validation image is right at the end: a network that predicts one class "
                     "for every image (collapse to one class) scores like this; only per-image "
                     "predictions can show it (valstat run records them).")

    if r["lr_initial"] is None:
        parts.append("The history has no learning rate: put CSVLogger after ReduceLROnPlateau in "
                     "the callbacks list so the rate is logged.")
    elif r["lr_collapse_epoch"] is not None:
        e, after = r["lr_collapse_epoch"], r["lr_epochs_after_collapse"]
        rate_then = float(epochs.loc[epochs["epoch"] == e, "learning_rate"].iloc[0])
        share = rate_then / r["lr_initial"]
        tail = [row["k"] for row in rows if row["epoch"] >= e]
        sentence = (f"The learning rate was down to {rate_then:.2g}, {100 * share:.2g}% of its "
                    f"start ({r['lr_initial']:.2g}), at epoch {e}")
        if after >= 2:
            sentence += (f", and training ran {after} epochs (epochs {e}-{rows[-1]['epoch']}) at "
                         "that rate or lower: ")
            if after >= 3 and len(set(tail)) == 1:
                sentence += "the flat tail is the schedule, not convergence."
            else:
                sentence += ("from there on the weights barely move, so later ups and downs of "
                             "val accuracy are not learning.")
        else:
            sentence += ", the last epoch."
        parts.append(sentence)
    else:
        parts.append(f"The learning rate never fell below {r['lr_collapse_threshold']:.0%} of its "
                     f"start (from {r['lr_initial']:.2g} to {r['lr_final']:.2g}).")
    ties = r["lr_cuts_after_ties"]
    if ties and ties["consistent"] and ties["cuts"]:
        p = ties["patience_inferred"]
        cuts = f"The {ties['cuts']} rate cuts" if ties["cuts"] > 1 else "The rate cut"
        sentence = (f"{cuts} fit ReduceLROnPlateau monitoring val_accuracy with patience {p}: "
                    f"{'each' if ties['cuts'] > 1 else 'it'} came after {p} epoch"
                    f"{'s' if p > 1 else ''} without a new best")
        if ties["after_ties_only"]:
            sentence += (f", {ties['after_ties_only']} of {ties['cuts']} after ties alone (a tie "
                         "is not an improvement)")
        sentence += (f". On {n} images a new best needs one more image right, so this schedule "
                     "cuts readily: monitor val_loss (it is continuous) or raise patience.")
        parts.append(sentence)

    if "val_loss" in epochs.columns and np.isfinite(epochs["val_loss"]).any():
        parts.append("Val loss averages a continuous loss over the images, so it moves smoothly "
                     "while val accuracy jumps in whole images: a smooth loss curve beside a "
                     "staircase accuracy curve is expected, not a contradiction.")

    ba, bl = r["best_val_accuracy_epoch"], r["best_val_loss_epoch"]
    if ba is not None:
        sentence = f"Val accuracy peaked at epoch {ba}"
        sentence += f" and val loss was lowest at epoch {bl}." if bl is not None else "."
        optimism = r["best_epoch_expected_optimism"]
        basis = r["best_epoch_optimism"]
        if optimism is not None and basis["epochs"] > 1:
            sentence += (f" Picking the best epoch flatters the score: were the {basis['epochs']} "
                         f"epochs within noise of the best all one model of accuracy "
                         f"{_pct(basis['true_accuracy'])} (their mean) re-measured independently "
                         f"on {n} images, the best would read {_points(optimism)} high on "
                         "average. That is an upper bound: real epochs share images and "
                         "weights, so the bias is smaller; quote a score on images not used "
                         "to choose the epoch.")
        parts.append(sentence)

    if r["val_size_inferred"]:
        parts.append(f"The validation size {n} was inferred as the smallest number of images "
                     "that makes every accuracy a whole count; the real size is a multiple of "
                     f"it: pass --val-size if it is not {n}.")
    return " ".join(parts)


def format_diagnosis(result: dict, width: int = 100) -> str:
    """Text for the terminal: the per-epoch table, the findings and the verdict."""
    n = result["val_size"]
    lines = []
    inferred = " (inferred)" if result.get("val_size_inferred") else ""
    level = result.get("level", 0.95)
    lines.append(f"{len(result['epochs'])} epochs; validation set {n} images{inferred}; "
                 f"accuracy moves in steps of {_points(result['lattice_step'])}")
    lines.append("")
    band = f"{100 * level:g}% band (Wilson)"
    lines.append(f"{'epoch':>5}  {'val acc':>7}  {'images':>9}  {band:<19}  {'change':>6}  noise")
    for row in result["epochs"]:
        change, noise = "", ""
        if row["change_images"] is not None:
            change = f"{row['change_images']:+d}" if row["change_images"] else "0"
            if row["within_noise"] is not None:
                verdict = "within noise" if row["within_noise"] else "BEYOND NOISE"
                noise = f"{verdict} ({_p(row['p_value'])})" if row["p_value"] is not None \
                    else verdict
        images = f"{row['k']}/{n}"
        interval = f"{_pct(row['low'])} - {_pct(row['high'])}"
        lines.append(f"{row['epoch']:>5}  {_pct(row['val_accuracy']):>7}  {images:>9}  "
                     f"{interval:<19}  {change:>6}  {noise}".rstrip())
    lines.append(f"noise: {result.get('noise_test', NOISE_TEST)}, at the "
                 f"{100 * (1 - level):g}% level")
    lines.append("")

    drop = result.get("largest_drop")
    if drop is None:
        lines.append("largest drop:     none (val accuracy never fell)")
    else:
        noise = "within noise" if drop["within_noise"] else "beyond noise"
        interval = ""
        if drop.get("low") is not None and drop.get("high") is not None:
            interval = (f"; simultaneous {100 * level:g}% interval for the change "
                        f"{100 * drop['low']:+.1f} to {100 * drop['high']:+.1f} points")
        lines.append(f"largest drop:     {-drop['images']} images ({_points(-drop['images'] / n)})"
                     f" from epoch {drop['from_epoch']} to {drop['to_epoch']}, {noise} "
                     f"({_p(drop['p_value'])}, {_p(drop['p_adjusted'])} adjusted for "
                     f"{drop['scanned']} moves{interval})")
    if result.get("lr_initial") is None:
        lines.append("learning rate:    not in the history")
    else:
        text = f"{result['lr_initial']:.3g} -> {result['lr_final']:.3g}"
        cuts = result.get("lr_cuts") or []
        text += f", {len(cuts)} cut{'s' if len(cuts) != 1 else ''}"
        if cuts:
            text += f" (at epochs {', '.join(str(c) for c in cuts)})"
        if result.get("lr_collapse_epoch") is not None:
            text += (f"; below {result['lr_collapse_threshold']:.0%} of the start from epoch "
                     f"{result['lr_collapse_epoch']} ({result['lr_epochs_after_collapse']} epochs)")
        lines.append(f"learning rate:    {text}")
    best = []
    if result.get("best_val_accuracy_epoch") is not None:
        best.append(f"val accuracy at epoch {result['best_val_accuracy_epoch']}")
    if result.get("best_val_loss_epoch") is not None:
        best.append(f"val loss at epoch {result['best_val_loss_epoch']}")
    if best:
        lines.append(f"best:             {', '.join(best)}")
    basis = result.get("best_epoch_optimism") or {}
    if result.get("best_epoch_expected_optimism") is not None and basis.get("epochs", 0) > 1:
        lines.append(f"best-epoch bias:  at most +{_points(result['best_epoch_expected_optimism'])} "
                     f"expected (best of {basis.get('epochs', '?')} plateau epochs as independent "
                     f"draws on {n} images: an upper bound)")
    lines.append("")
    lines.append("verdict:")
    lines.extend(textwrap.wrap(result["verdict"], width=width, initial_indent="  ",
                               subsequent_indent="  "))
    return "\n".join(lines) + "\n"
