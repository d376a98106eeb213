"""Everything the report shows, gathered from a store with `valstat.summary` and `valstat.stats`.

`analyse(tables)` returns an `Analysis`: the JSON-ready `summary` (per-arm intervals, moves within
noise, variance components, learning-rate collapse, one-class collapse, optimism, comparisons,
sizes) plus the tidy tables the figures need (per-epoch bands, the example run's tested moves,
collapse marks, the selection scatter...). No statistic that `valstat.stats` provides is computed
here: this module selects rows, calls the stats functions and counts things (runs, ties).
Epochs are the stored numbers (counted from 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from valstat import stats
from valstat.errors import UserError
from valstat.summary import summarize

LEVEL = 0.95
LR_COLLAPSE_THRESHOLD = 0.01   # rate below 1% of its initial value: training has stopped
HALFWIDTH_TARGETS = (0.05, 0.025)
Z95 = 1.959963984540054


@dataclass
class Analysis:
    meta: dict
    summary: dict                   # valstat.summary.summarize output
    arms: list                      # arms with at least one run, in the experiment's order
    val_sizes: dict                 # arm -> n
    runs: pd.DataFrame              # store runs + final/best val accuracy, diverged flag
    epochs: pd.DataFrame            # store epochs + arm, seed, fold, status
    coverage: dict
    bands: pd.DataFrame             # arm, epoch, estimate, low, high, n_runs
    example: dict | None            # run with the largest drop: run_id, arm, changes, drop
    lr_marks: pd.DataFrame          # run_id, arm, epoch, learning_rate where the rate collapsed
    lr_detail: dict                 # arm -> first/last collapse epoch, initial and lowest rate
    one_class: list                 # runs that end predicting one class
    steps: dict                     # arm -> ties of accuracy vs moves of the loss
    variance: pd.DataFrame          # arm, component, variance, raw, share, method, note
    selection: pd.DataFrame         # run_id, arm, chosen_epoch, chosen, truth
    paired: pd.DataFrame            # unit, arm, final
    halfwidth: dict                 # curve, current, measured
    advice: dict                    # sizes for targets, detectable difference, runs needed
    one_run_interval: dict          # arm -> Wilson interval of one run at the mean accuracy
    correct_maps: list = field(default_factory=list)


def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def class_name(meta: dict, index) -> str:
    """Class folder name for a label index (meta dataset.class_names), else the index."""
    names = (meta.get("dataset") or {}).get("class_names") or meta.get("class_names") or []
    try:
        return str(names[int(index)])
    except (IndexError, TypeError, ValueError):
        return str(index)


def _correct_matrices(predictions: pd.DataFrame) -> dict:
    """run_id -> (epochs, examples, labels, (epochs x images) bool correct), sorted.

    Runs whose predictions do not form a full epochs x images grid are left out.
    """
    out = {}
    if predictions is None or predictions.empty:
        return out
    frame = predictions.sort_values(["run_id", "epoch", "example"], kind="stable")
    run = frame["run_id"].to_numpy()
    epoch = frame["epoch"].to_numpy()
    example = frame["example"].to_numpy()
    label = frame["label"].to_numpy()
    correct = frame["predicted"].to_numpy() == label
    bounds = np.flatnonzero(np.r_[True, run[1:] != run[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        epochs_u = np.unique(epoch[lo:hi])
        first = epoch[lo:hi] == epochs_u[0]
        examples_u = example[lo:hi][first]
        shape = (len(epochs_u), len(examples_u))
        if hi - lo != shape[0] * shape[1] or not np.array_equal(
                example[lo:hi].reshape(shape), np.broadcast_to(examples_u, shape)):
            continue
        out[run[lo]] = (epochs_u, examples_u, label[lo:hi][first],
                        correct[lo:hi].reshape(shape))
    return out


# --------------------------------------------------------------------------- main

def analyse(tables) -> Analysis:
    """Gather the report's numbers from StoreTables (runs, epochs, predictions, meta)."""
    meta = dict(tables.meta or {})
    runs = tables.runs.copy()
    if runs.empty:
        raise UserError("the store holds no runs yet: nothing to report "
                        "(wait until `valstat run` has finished at least one run)")
    epochs = tables.epochs.merge(runs[["run_id", "arm", "seed", "fold", "status"]],
                                 on="run_id", how="inner")
    if epochs.empty:
        raise UserError("the store's runs have no recorded epochs: nothing to report")
    predictions = tables.predictions
    summary = summarize(tables.runs, tables.epochs, predictions, meta)
    present = set(runs["arm"])
    arms = [a for a in summary["arm_names"] if a in present]
    arms += [a for a in dict.fromkeys(runs["arm"]) if a not in arms]
    arm_summaries = summary["arms"]
    val_sizes = {a: (arm_summaries.get(a) or {}).get("val_size") for a in arms}
    matrices = _correct_matrices(predictions)

    last = epochs.sort_values("epoch").groupby("run_id").tail(1).set_index("run_id")
    runs["final_epoch"] = runs["run_id"].map(last["epoch"])
    runs["final_val_accuracy"] = runs["run_id"].map(last["val_accuracy"])
    runs["best_val_accuracy"] = runs["run_id"].map(
        epochs.groupby("run_id")["val_accuracy"].max())
    runs["diverged"] = runs["status"].astype(str).eq("diverged")
    runs["n"] = runs["arm"].map(val_sizes)
    ok = runs[~runs["diverged"] & runs["final_val_accuracy"].notna()]
    healthy = epochs[~epochs["status"].eq("diverged")]

    analysis = Analysis(
        meta=meta, summary=summary, arms=arms, val_sizes=val_sizes, runs=runs, epochs=epochs,
        coverage=_coverage(meta, runs, arms, summary),
        bands=_bands(healthy),
        example=None,
        lr_marks=pd.DataFrame(), lr_detail={},
        one_class=_one_class(predictions, runs, meta),
        steps=_steps(epochs, arms),
        variance=_variance(summary, arms, runs),
        selection=_selection(healthy),
        paired=ok.assign(unit=ok["seed"].astype(str) + "/" + ok["fold"].astype(str))[
            ["unit", "arm", "final_val_accuracy"]].rename(
                columns={"final_val_accuracy": "final"}),
        halfwidth={}, advice={}, one_run_interval={})
    collapsed = {item["run_id"] for item in analysis.one_class}
    analysis.example = _example(epochs, runs, val_sizes, matrices, collapsed)
    analysis.lr_marks, analysis.lr_detail = _learning_rate(epochs, arms)
    analysis.halfwidth = _halfwidth(arms, val_sizes, meta, arm_summaries)
    analysis.advice = _advice(arms, arm_summaries, summary)
    analysis.one_run_interval = _one_run_intervals(arms, val_sizes, arm_summaries)
    analysis.correct_maps = _correct_maps(analysis, matrices)
    return analysis


def _coverage(meta: dict, runs: pd.DataFrame, arms: list, summary: dict) -> dict:
    sweep = meta.get("sweep") or {}
    planned_arms = meta.get("arms") or arms
    planned = None
    if sweep.get("seeds"):
        planned = int(sweep["seeds"]) * int(sweep.get("folds") or 1) * len(planned_arms)
    n_runs = int(len(runs))
    return {"runs": n_runs, "planned": planned,
            "complete": planned is None or n_runs >= planned,
            "finished": int((runs["status"] == "finished").sum()),
            "diverged": int(runs["diverged"].sum()),
            "arms": len(arms), "seeds": int(runs["seed"].nunique()),
            "folds": int(runs["fold"].nunique()),
            "missing_arms": [a for a in planned_arms if a not in arms],
            "planned_seeds": sweep.get("seeds"), "planned_folds": sweep.get("folds")}


def _bands(epochs: pd.DataFrame) -> pd.DataFrame:
    """Mean validation accuracy per arm and epoch, 95% t interval (seed as unit with folds)."""
    rows = []
    for (arm, epoch), group in epochs.groupby(["arm", "epoch"], sort=True):
        values = group["val_accuracy"].to_numpy(dtype=float)
        keep = np.isfinite(values)
        values, seeds = values[keep], group["seed"].to_numpy()[keep]
        if values.size == 0:
            continue
        n_seeds = len(np.unique(seeds))
        units = seeds if 1 < n_seeds < values.size else None
        res = stats.mean_interval(values, level=LEVEL, method="t", units=units)
        rows.append((arm, int(epoch), res["estimate"], res["low"], res["high"], values.size))
    return pd.DataFrame(rows, columns=["arm", "epoch", "estimate", "low", "high", "n_runs"])


def _changes(group: pd.DataFrame, n: int, matrices: dict):
    """curve_changes of one run (per-image McNemar when its predictions are complete)."""
    run_id = group["run_id"].iloc[0]
    acc = group["val_accuracy"].to_numpy(dtype=float)
    correct = None
    if run_id in matrices:
        m_epochs, _, _, matrix = matrices[run_id]
        if np.array_equal(m_epochs, group["epoch"].to_numpy()) and matrix.shape[1] == n:
            correct = matrix
    try:
        changes = stats.curve_changes(acc, n, correct=correct, level=LEVEL)
    except UserError:
        correct = None
        changes = stats.curve_changes(acc, n, level=LEVEL)
    changes["epoch"] = group["epoch"].to_numpy()
    return changes, correct is not None


def _example(epochs, runs, val_sizes, matrices, exclude=frozenset()):
    """The run with the largest epoch-to-epoch drop (ties: smallest p), the founding question.

    Runs that end collapsed to one class (`exclude`) are passed over while another run has a
    drop: their fall is shown by the per-image map and its own finding.
    """
    best = None
    fallback = None
    order = sorted(epochs["run_id"].unique(), key=lambda r: (r in exclude, str(r)))
    grouped = dict(tuple(epochs.sort_values("epoch").groupby("run_id", sort=False)))
    for run_id in order:
        group = grouped[run_id]
        if best is not None and run_id in exclude:
            break
        arm = group["arm"].iloc[0]
        n = val_sizes.get(arm)
        if not n or len(group) < 2 or not group["val_accuracy"].notna().all():
            continue
        changes, paired = _changes(group, n, matrices)
        drop = stats.largest_drop(changes, level=LEVEL)
        item = {"run_id": run_id, "arm": arm, "changes": changes, "drop": drop,
                "paired": paired, "n": n}
        if fallback is None:
            fallback = item
        if drop is not None:
            key = (drop["images"], -drop["p_value"])
            if best is None or key < best[0]:
                best = (key, item)
    return best[1] if best else fallback


def _learning_rate(epochs, arms):
    """Per run, the epoch its rate fell below 1% of the start (stats.lr_collapse), for marks."""
    marks, detail = [], {}
    for arm in arms:
        collapse_epochs, lows, initial = [], [], None
        for run_id, group in epochs[epochs["arm"] == arm].sort_values("epoch").groupby(
                "run_id", sort=False):
            rate = group["learning_rate"].to_numpy(dtype=float)
            if len(rate) == 0 or not np.isfinite(rate).all() or rate[0] <= 0:
                continue
            res = stats.lr_collapse(rate, threshold=LR_COLLAPSE_THRESHOLD)
            initial = float(rate[0]) if initial is None else initial
            lows.append(res["final_lr"])
            if res["epoch"] is not None:
                epoch = int(group["epoch"].iloc[res["epoch"]])
                collapse_epochs.append(epoch)
                marks.append((run_id, arm, epoch, float(rate[res["epoch"]])))
        detail[arm] = {"first": min(collapse_epochs) if collapse_epochs else None,
                       "last": max(collapse_epochs) if collapse_epochs else None,
                       "initial": initial, "lowest": min(lows) if lows else None}
    return pd.DataFrame(marks, columns=["run_id", "arm", "epoch", "learning_rate"]), detail


def _one_class(predictions, runs, meta):
    """Runs that end predicting one class for every validation image, and since which epoch."""
    if predictions is None or predictions.empty:
        return []
    table = stats.one_class_collapse(predictions[["run_id", "epoch", "predicted"]])
    info = runs.set_index("run_id")
    out = []
    for run_id, group in table.sort_values("epoch").groupby("run_id", sort=False):
        flags = group["collapsed"].to_numpy()
        if run_id not in info.index or not flags[-1]:
            continue
        # the streak of epochs predicting the same single class as the last epoch (a run can
        # collapse onto one class, then onto another)
        cls = group["majority_class"].iloc[-1]
        same = flags & (group["majority_class"].to_numpy() == cls)
        start = len(same)
        while start > 0 and same[start - 1]:
            start -= 1
        final = float(info.at[run_id, "final_val_accuracy"])
        n = info.at[run_id, "n"]
        out.append({"run_id": run_id, "arm": info.at[run_id, "arm"],
                    "from_epoch": int(group["epoch"].iloc[start]),
                    "epochs": int(len(flags) - start), "class_index": int(cls),
                    "class_name": class_name(meta, cls), "final": final,
                    "k": int(round(final * n)) if n and _finite(final) else None,
                    "n": int(n) if n else None})
    return out


def _steps(epochs, arms):
    """Counts per arm: epoch-to-epoch accuracy ties (lattice) and loss moves (continuous)."""
    out = {}
    for arm in arms:
        part = epochs[epochs["arm"] == arm].sort_values(["run_id", "epoch"])
        d_acc = part.groupby("run_id")["val_accuracy"].diff().dropna()
        d_loss = part.groupby("run_id")["val_loss"].diff()
        d_loss = d_loss[np.isfinite(d_loss)]
        moved = d_acc[d_acc != 0].abs()
        out[arm] = {"moves": int(len(d_acc)), "ties": int((d_acc == 0).sum()),
                    "tie_share": float((d_acc == 0).mean()) if len(d_acc) else None,
                    "loss_moves": int(len(d_loss)), "loss_same": int((d_loss == 0).sum()),
                    "median_acc_move": float(moved.median()) if len(moved) else None,
                    "median_loss_move": float(d_loss.abs().median()) if len(d_loss) else None}
    return out


PER_RUN_DRAW = ("stratified-per-run", "binomial-per-run")


def _one_run_per_seed_and_split(arm_runs: pd.DataFrame) -> bool:
    """Every run has its own seed and its own validation split: their parts cannot be told apart."""
    splits = arm_runs[["split_seed", "fold"]].astype(str).drop_duplicates()
    return len(arm_runs) > 1 and arm_runs["seed"].nunique() == len(splits) == len(arm_runs)


def _variance(summary, arms, runs):
    """Variance components per arm from the summary, plus its finite-sample row if present.

    The finite-sample row is Jordan's independent-errors variance where runs share their
    validation images, else the variance of each run's own draw of images (summary's method).
    Where seed and split are confounded (one run per seed and per split), the not-estimable
    split, seed and residual rows give way to one row, seed_split: what is left of the total
    once the draw of the validation images is taken out (the total where that is unknown).
    """
    rows = []
    for arm in arms:
        info = summary["arms"].get(arm) or {}
        components = [{"arm": arm, **row} for row in info.get("variance_components") or []]
        finite = info.get("finite_sample")
        if finite:
            variance = finite.get("sampling_variance", finite.get("independent_errors_variance"))
            components.append({"arm": arm, "component": "finite_sample", "variance": variance,
                               "raw": variance, "share": finite.get("finite_sample_share"),
                               "method": finite.get("method", "jordan-independent-errors"),
                               "note": ""})
        total = next((r for r in components if r["component"] == "total"), None)
        if total is not None and _one_run_per_seed_and_split(runs[runs["arm"] == arm]):
            components = [r for r in components if r["component"] not in stats.variance.COMPONENTS]
            if finite and finite.get("method") in PER_RUN_DRAW:
                rest = {"variance": finite.get("model_variance_clipped"),
                        "raw": finite.get("model_variance"),
                        "share": None if finite.get("finite_sample_share") is None
                        else 1.0 - finite["finite_sample_share"],
                        "method": "total-minus-finite-sample"}
            else:
                rest = {"variance": total["variance"], "raw": total["raw"], "share": 1.0,
                        "method": total["method"]}
            components.append({"arm": arm, "component": "seed_split", **rest,
                               "note": "seed and split together (not separable)"})
        rows += components
    frame = pd.DataFrame(rows, columns=["arm", "component", "variance", "raw", "share",
                                        "method", "note"])
    frame["variance"] = pd.to_numeric(frame["variance"], errors="coerce")
    return frame


def confounded(analysis: Analysis, arm) -> bool:
    """Seed and split could not be separated for this arm (its variance has a seed_split row)."""
    frame = analysis.variance
    return bool(((frame["arm"] == arm) & (frame["component"] == "seed_split")).any())


def finite_sample_methods(analysis: Analysis) -> set:
    """Estimators of the finite-validation-set noise that the arms used (summary methods)."""
    frame = analysis.variance
    return set(frame.loc[frame["component"] == "finite_sample", "method"])


def _selection(epochs):
    """Per run: the epoch picked by best val accuracy, its val accuracy and truth accuracy."""
    columns = ["run_id", "arm", "chosen_epoch", "chosen", "truth"]
    if "truth_accuracy" not in epochs or not epochs["truth_accuracy"].notna().any():
        return pd.DataFrame(columns=columns)
    per_run = stats.selection.optimism_per_run(epochs)
    chosen = per_run[per_run["rule"] == "best_val_accuracy"][["run_id", "chosen_epoch"]]
    merged = chosen.merge(epochs, left_on=["run_id", "chosen_epoch"],
                          right_on=["run_id", "epoch"], how="left")
    return pd.DataFrame({"run_id": merged["run_id"], "arm": merged["arm"],
                         "chosen_epoch": merged["chosen_epoch"],
                         "chosen": merged["val_accuracy"],
                         "truth": merged["truth_accuracy"]}).dropna(subset=["truth"])


def arms_differing_only_in_val_size(meta: dict, arms: list) -> list:
    """Arms whose settings are identical except data.val_size (the shipped val_size.toml)."""
    config = meta.get("arms_config") or {}
    if len(arms) < 2 or not all(isinstance(config.get(a), dict) for a in arms):
        return []

    def stripped(arm):
        settings = {k: dict(v) if isinstance(v, dict) else v for k, v in config[arm].items()}
        if isinstance(settings.get("data"), dict):
            settings["data"].pop("val_size", None)
        settings.pop("val_size", None)
        return settings

    base = stripped(arms[0])
    same = [a for a in arms if stripped(a) == base]

    def size(a):
        data = config[a].get("data") if isinstance(config[a].get("data"), dict) else config[a]
        return data.get("val_size")

    return same if len(same) >= 2 and len({size(a) for a in same}) >= 2 else []


def _halfwidth(arms, val_sizes, meta, arm_summaries):
    """Wilson half-width against n at the first arm's mean accuracy; measured run-to-run points."""
    arm = arms[0]
    n = val_sizes.get(arm)
    final = (arm_summaries.get(arm) or {}).get("final_val_accuracy") or {}
    if not n or not _finite(final.get("estimate")):
        return {}
    p = min(max(float(final["estimate"]), 0.0), 1.0)
    grid = np.unique(np.round(np.logspace(1, np.log10(2000), 160)).astype(int))
    low, high = stats.binomial_interval(np.floor(p * grid + 0.5), grid, LEVEL, "wilson")
    curve = pd.DataFrame({"n": grid, "halfwidth": (high - low) / 2})
    lo_now, hi_now = stats.binomial_interval(int(np.floor(p * n + 0.5)), n, LEVEL, "wilson")
    measured = None
    same = arms_differing_only_in_val_size(meta, arms)
    rows = []
    for a in same:
        info = (arm_summaries.get(a) or {}).get("final_val_accuracy") or {}
        if _finite(info.get("sd")) and val_sizes.get(a):
            # where 95% of single runs land: 1.96 x the run-to-run sd of final accuracy
            rows.append((a, int(val_sizes[a]), Z95 * float(info["sd"]), float(info["sd"])))
    if rows:
        measured = pd.DataFrame(rows, columns=["arm", "n", "halfwidth", "sd"])
    return {"curve": curve, "current": {"n": int(n), "p": p, "halfwidth": (hi_now - lo_now) / 2},
            "measured": measured, "arms": same}


def _advice(arms, arm_summaries, summary):
    arm = arms[0]
    info = arm_summaries.get(arm) or {}
    final = info.get("final_val_accuracy") or {}
    n = info.get("val_size")
    if not n or not _finite(final.get("estimate")):
        return {"runs_needed": (summary.get("runs_needed") or {}).get("runs")}
    p = min(max(float(final["estimate"]), 0.0), 1.0)
    sizes = {}
    for target in HALFWIDTH_TARGETS:
        try:
            sizes[target] = stats.val_size_for_halfwidth(p, target, LEVEL)
        except UserError:
            sizes[target] = None
    return {"arm": arm, "p": p, "n": int(n), "sizes": sizes,
            "mdd": info.get("minimum_detectable_difference"),
            "runs_needed": (summary.get("runs_needed") or {}).get("runs"),
            "gamma": (summary.get("runs_needed") or {}).get("gamma")}


def _one_run_intervals(arms, val_sizes, arm_summaries):
    """Wilson interval of one model scoring round(mean·n) of n (what one run can tell)."""
    out = {}
    for arm in arms:
        final = (arm_summaries.get(arm) or {}).get("final_val_accuracy") or {}
        n = val_sizes.get(arm)
        if n and _finite(final.get("estimate")):
            k = int(np.floor(float(final["estimate"]) * n + 0.5))
            low, high = stats.binomial_interval(k, n, LEVEL, "wilson")
            out[arm] = {"k": k, "n": int(n), "low": low, "high": high}
    return out


def _correct_maps(analysis: Analysis, matrices: dict) -> list:
    """Per-image maps for the example run and the first run collapsed to one class (if any)."""
    chosen = []
    if analysis.example is not None:
        chosen.append(("example", analysis.example["run_id"]))
    for item in analysis.one_class:
        if item["run_id"] not in {c[1] for c in chosen}:
            chosen.append(("collapsed", item["run_id"]))
            break
    maps = []
    for kind, run_id in chosen:
        if run_id not in matrices:
            continue
        epochs_, _, labels, matrix = matrices[run_id]
        order = np.lexsort((-matrix.sum(axis=0), labels))   # by class, then most often right
        maps.append({"kind": kind, "run_id": run_id, "matrix": matrix[:, order].T,
                     "row_labels": [class_name(analysis.meta, c) for c in labels[order]],
                     "first_epoch": int(epochs_[0])})
    return maps
