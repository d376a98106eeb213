"""Everything the report shows, gathered from a store with `valstat.summary` and `valstat.stats`.

`analyse(tables)` builds the run table and cube once (valstat.core) and returns an `Analysis`: the
typed `summary` (valstat.results.Summary: per-arm intervals, moves within
noise, variance components, learning-rate collapse, one-class collapse, optimism, comparisons,
sizes) plus the tidy tables the figures need (per-epoch bands, the example run's tested moves,
collapse marks, the selection scatter...). No statistic that `valstat.stats` provides is computed
here: this module selects rows, calls the stats functions and counts things (runs, ties).
Epochs are the stored numbers (counted from 0).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm

from valstat import stats
from valstat.core import DEFAULT, Core, Settings, build_core
from valstat.core.design import mean_accuracy_interval
from valstat.images import class_names
from valstat.report.text import finite
from valstat.errors import ValstatError
from valstat.results import LargestDrop, Summary
from valstat.summary import summarize_core

HALFWIDTH_TARGETS = (0.05, 0.025)


@dataclass(frozen=True)
class DropExample:
    """The run with the largest epoch-to-epoch drop, the report's worked example. changes: its
    tested moves, one row per epoch (valstat.stats.curve_changes + epoch); n: its validation
    images; paired: the moves were tested per image (McNemar); drop: None when nothing fell."""

    run_id: str
    arm: str
    n: int
    changes: pd.DataFrame
    drop: LargestDrop | None
    paired: bool


@dataclass
class Analysis:
    meta: dict
    settings: Settings
    core: Core                      # run table, epochs, cube (valstat.core)
    summary: Summary                # valstat.summary.summarize_core output
    arms: list                      # arms with at least one run, in the experiment's order
    val_sizes: dict                 # arm -> n
    runs: pd.DataFrame              # the run table (core.runs) + n (the arm's val size)
    epochs: pd.DataFrame            # epochs of counted runs + arm, seed, fold, status
    coverage: dict
    bands: pd.DataFrame             # arm, epoch, estimate, low, high, n_runs, design, scope
    example: DropExample | None     # the run with the largest drop
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




def class_name(meta: dict, index) -> str:
    """Class folder name for a label index (meta dataset.class_names), else the index."""
    names = class_names(meta)
    try:
        return str(names[int(index)])
    except (IndexError, TypeError, ValueError):
        return str(index)


def _run_grids(core: Core) -> dict:
    """run_id -> (epochs, examples, labels, (epochs x images) bool correct) for every counted run
    whose predictions form a full epochs x images grid (Cube.grid)."""
    out = {}
    for run_id, code in zip(core.counted["run_id"], core.counted["code"]):
        grid = core.cube.grid(int(code))
        if grid is not None:
            out[run_id] = grid
    return out


# --------------------------------------------------------------------------- main

def analyse(tables, settings: Settings = DEFAULT) -> Analysis:
    """Gather the report's numbers from StoreTables (runs, epochs, predictions, meta).

    Every number covers the same runs: core.counted (diverged runs only with
    settings.count_diverged); the coverage counts all runs.
    """
    core = build_core(tables.runs, tables.epochs, tables.predictions, dict(tables.meta or {}), settings)
    summary = summarize_core(core)
    meta = core.meta
    arms = core.arms_present
    val_sizes = {a: summary.arms[a].val_size for a in arms}
    matrices = _run_grids(core)
    runs = core.runs.reset_index(drop=True)
    runs["final_epoch"] = runs["last_epoch"]
    runs["n"] = runs["arm"].map(val_sizes)
    ok = runs[runs["counted"] & runs["final_val_accuracy"].notna()]
    epochs = core.counted_epochs

    analysis = Analysis(
        meta=meta, settings=settings, core=core, summary=summary, arms=arms, val_sizes=val_sizes,
        runs=runs, epochs=epochs,
        coverage=_coverage(meta, runs, arms),
        bands=_bands(core, epochs, settings.level),
        example=None,
        lr_marks=pd.DataFrame(), lr_detail={},
        one_class=_one_class(runs[runs["counted"]], meta),
        steps=_steps(epochs, arms),
        variance=_variance(summary, arms, runs[runs["counted"]]),
        selection=_selection(epochs),
        paired=ok.assign(unit=ok["seed"].astype(str) + "/" + ok["fold"].astype(str))[
            ["unit", "arm", "final_val_accuracy"]].rename(
                columns={"final_val_accuracy": "final"}),
        halfwidth={}, advice={}, one_run_interval={})
    collapsed = {item["run_id"] for item in analysis.one_class}
    analysis.example = _example(epochs, val_sizes, matrices, settings.level, collapsed)
    analysis.lr_marks, analysis.lr_detail = _learning_rate(runs[runs["counted"]], arms)
    analysis.halfwidth = _halfwidth(arms, val_sizes, meta, summary, settings.level)
    analysis.advice = _advice(arms, summary, settings.level)
    analysis.one_run_interval = _one_run_intervals(arms, val_sizes, summary, settings.level)
    analysis.correct_maps = _correct_maps(analysis, matrices)
    return analysis


def _coverage(meta: dict, runs: pd.DataFrame, arms: list) -> dict:
    sweep = meta.get("sweep") or {}
    planned_arms = meta.get("arms") or arms
    planned, planned_seeds = None, sweep.get("seeds")
    if planned_seeds:
        # never fewer than the seeds stored: a store written before `valstat run` kept the
        # larger plan may record the smaller --seeds of a later command
        planned_seeds = max(int(planned_seeds), int(runs["seed"].nunique()))
        planned = planned_seeds * int(sweep.get("folds") or 1) * len(planned_arms)
    n_runs = int(len(runs))
    return {"runs": n_runs, "planned": planned,
            "complete": planned is None or n_runs >= planned,
            "finished": int((runs["status"] == "finished").sum()),
            "diverged": int(runs["diverged"].sum()),
            "arms": len(arms), "seeds": int(runs["seed"].nunique()),
            "folds": int(runs["fold"].nunique()),
            "missing_arms": [a for a in planned_arms if a not in arms],
            "planned_seeds": planned_seeds, "planned_folds": sweep.get("folds")}


def _bands(core: Core, epochs: pd.DataFrame, level: float) -> pd.DataFrame:
    """Mean validation accuracy per arm and epoch with its interval at `level`, by the design
    of the runs at that epoch, as for the final accuracy (core.design.mean_accuracy_interval,
    without the collapse-aware interval)."""
    runs = core.runs.set_index("run_id")[["code", "split", "n_val"]]
    rows = []
    for (arm, epoch), group in epochs.groupby(["arm", "epoch"], sort=True):
        group = group[np.isfinite(group["val_accuracy"].to_numpy(dtype=float))]
        if len(group) == 0:
            continue
        res = mean_accuracy_interval(group.join(runs, on="run_id"), "val_accuracy", "epoch", core.cube, level)
        rows.append((arm, int(epoch), res["estimate"], res["low"], res["high"], len(group), res["design"],
                     res["scope"]))
    return pd.DataFrame(rows, columns=["arm", "epoch", "estimate", "low", "high", "n_runs", "design", "scope"])


def _changes(group: pd.DataFrame, n: int, matrices: dict, level: float):
    """curve_changes of one run (per-image McNemar when its predictions are complete and match
    its epochs and validation size)."""
    run_id = group["run_id"].iloc[0]
    acc = group["val_accuracy"].to_numpy(dtype=float)
    correct = None
    if run_id in matrices:
        m_epochs, _, _, matrix = matrices[run_id]
        same = np.array_equal(m_epochs, group["epoch"].to_numpy()) and matrix.shape[1] == n
        if same and np.array_equal(matrix.sum(axis=1), np.rint(acc * n)):
            correct = matrix
    changes = stats.curve_changes(acc, n, correct=correct, level=level)
    changes["epoch"] = group["epoch"].to_numpy()
    return changes, correct is not None


def _example(epochs, val_sizes, matrices, level, exclude=frozenset()):
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
        changes, paired = _changes(group, n, matrices, level)
        drop = stats.largest_drop(changes, level=level)
        drop = None if drop is None else LargestDrop.from_stats(drop)
        item = DropExample(run_id, arm, n, changes, drop, paired)
        if fallback is None:
            fallback = item
        if drop is not None:
            key = (drop.images, -drop.p_value)
            if best is None or key < best[0]:
                best = (key, item)
    return best[1] if best else fallback


def _learning_rate(runs, arms):
    """Marks where each run's rate collapsed and per arm the first/last collapse epoch, the
    first run's initial rate and the lowest final rate (all from the run table)."""
    marks, detail = [], {}
    for arm in arms:
        part = runs[(runs["arm"] == arm) & runs["lr_initial"].notna()].sort_values("run_id")
        hit = part[part["collapse_epoch"].notna()]
        for row in hit.itertuples(index=False):
            marks.append((row.run_id, arm, int(row.collapse_epoch), float(row.collapse_lr)))
        detail[arm] = {"first": int(hit["collapse_epoch"].min()) if len(hit) else None,
                       "last": int(hit["collapse_epoch"].max()) if len(hit) else None,
                       "initial": float(part["lr_initial"].iloc[0]) if len(part) else None,
                       "lowest": float(part["lr_final"].min()) if len(part) else None}
    return pd.DataFrame(marks, columns=["run_id", "arm", "epoch", "learning_rate"]), detail


def _one_class(runs, meta):
    """Runs that end predicting one class for every validation image, and since which epoch."""
    out = []
    for row in runs[runs["ends_collapsed"].fillna(False).astype(bool)].itertuples(index=False):
        final, n = float(row.final_val_accuracy), row.n
        out.append({"run_id": row.run_id, "arm": row.arm, "from_epoch": int(row.one_class_from),
                    "epochs": int(row.last_epoch - row.one_class_from + 1),
                    "class_index": int(row.one_class_class),
                    "class_name": class_name(meta, row.one_class_class), "final": final,
                    "k": int(round(final * n)) if n and finite(final) else None,
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
    """Every run has its own seed and its own validation images (the core's split label, from
    the images each run scored): their parts cannot be told apart."""
    return len(arm_runs) > 1 and arm_runs["seed"].nunique() == arm_runs["split"].nunique() == len(arm_runs)


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
        info = summary.arms[arm]
        components = [{"arm": arm, **dataclasses.asdict(row)} for row in info.variance_components or []]
        finite = info.finite_sample
        if finite:
            components.append({"arm": arm, "component": "finite_sample",
                               "variance": finite.sampling_variance, "raw": finite.sampling_variance,
                               "share": finite.finite_sample_share, "method": finite.method,
                               "note": ""})
        total = next((r for r in components if r["component"] == "total"), None)
        if total is not None and _one_run_per_seed_and_split(runs[runs["arm"] == arm]):
            components = [r for r in components if r["component"] not in stats.variance.COMPONENTS]
            if finite and finite.method in PER_RUN_DRAW:
                rest = {"variance": finite.model_variance_clipped,
                        "raw": finite.model_variance,
                        "share": None if finite.finite_sample_share is None
                        else 1.0 - finite.finite_sample_share,
                        "method": "total-minus-finite-sample"}
            else:
                rest = {"variance": total["variance"], "raw": total["raw"],
                        "share": 1.0 if total["variance"] > 0 else np.nan, "method": total["method"]}
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


def _wilson_halfwidth(p: float, n, level: float):
    """Half-width (fraction) of the Wilson interval of one model scoring round(p·n) of n;
    n an int (returns a float) or an array of sizes (returns an array of that shape)."""
    low, high = stats.binomial_interval(np.floor(p * np.asarray(n) + 0.5), n, level, "wilson")
    return (high - low) / 2 if np.ndim(n) else float(high - low) / 2


def _best_arm(arms, summary):
    """The arm with the highest mean final val accuracy (None when no arm has one)."""
    means = {a: summary.arms[a].final_val_accuracy.estimate for a in arms
             if summary.arms[a].final_val_accuracy and finite(summary.arms[a].final_val_accuracy.estimate)}
    return max(means, key=means.get) if means else None


def _halfwidth(arms, val_sizes, meta, summary, level):
    """Wilson half-width against n at the mean accuracy of the arm with the highest mean
    (the one whose size matters); measured run-to-run points."""
    arm = _best_arm(arms, summary)
    n = val_sizes.get(arm)
    if arm is None or not n:
        return {}
    p = min(max(float(summary.arms[arm].final_val_accuracy.estimate), 0.0), 1.0)
    grid = np.unique(np.round(np.logspace(1, np.log10(2000), 160)).astype(int))
    curve = pd.DataFrame({"n": grid, "halfwidth": _wilson_halfwidth(p, grid, level)})
    measured = None
    same = arms_differing_only_in_val_size(meta, arms)
    z = float(norm.ppf(0.5 + level / 2))
    rows = []
    for a in same:
        final = summary.arms[a].final_val_accuracy
        if final and finite(final.sd) and val_sizes.get(a):
            # where `level` of single runs land: z x the run-to-run sd of final accuracy
            rows.append((a, int(val_sizes[a]), z * float(final.sd), float(final.sd)))
    if rows:
        measured = pd.DataFrame(rows, columns=["arm", "n", "halfwidth", "sd"])
    return {"curve": curve,
            "current": {"arm": arm, "n": int(n), "p": p, "halfwidth": _wilson_halfwidth(p, n, level)},
            "measured": measured, "arms": same}


def _advice(arms, summary, level):
    """Per arm (experiment order): its mean accuracy p, n, the Wilson half-width there, the
    validation sizes for HALFWIDTH_TARGETS and the detectable difference; runs needed."""
    per_arm = []
    for arm in arms:
        info = summary.arms[arm]
        final = info.final_val_accuracy
        n = info.val_size
        if not n or not final or not finite(final.estimate):
            continue
        p = min(max(float(final.estimate), 0.0), 1.0)
        sizes = {}
        for target in HALFWIDTH_TARGETS:
            try:   # refused when no size up to the search limit reaches the target
                sizes[target] = stats.val_size_for_halfwidth(p, target, level)
            except ValstatError:
                sizes[target] = None
        per_arm.append({"arm": arm, "p": p, "n": int(n), "halfwidth": _wilson_halfwidth(p, n, level),
                        "sizes": sizes, "mdd": info.minimum_detectable_difference})
    return {"arms": per_arm, "runs_needed": summary.runs_needed.runs,
            "gamma": summary.runs_needed.gamma}


def _one_run_intervals(arms, val_sizes, summary, level):
    """Wilson interval of one model scoring round(mean·n) of n (what one run can tell)."""
    out = {}
    for arm in arms:
        final = summary.arms[arm].final_val_accuracy
        n = val_sizes.get(arm)
        if n and final and finite(final.estimate):
            k = int(np.floor(float(final.estimate) * n + 0.5))
            low, high = stats.binomial_interval(k, n, level, "wilson")
            out[arm] = {"k": k, "n": int(n), "low": low, "high": high}
    return out


def _correct_maps(analysis: Analysis, matrices: dict) -> list:
    """Per-image maps for the example run and the first run collapsed to one class (if any);
    kind "collapsed" for every map whose run collapsed (the example run may have), else "example"."""
    collapsed = {item["run_id"] for item in analysis.one_class}
    chosen = []
    if analysis.example is not None:
        chosen.append(("example", analysis.example.run_id))
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
        maps.append({"kind": "collapsed" if run_id in collapsed else kind, "run_id": run_id, "matrix": matrix[:, order].T,
                     "row_labels": [class_name(analysis.meta, c) for c in labels[order]],
                     "first_epoch": int(epochs_[0])})
    return maps
