"""Sentences, tables and the methods paragraph of the report, from an Analysis and Strings.

Numbers come from the Analysis (summary + stats); words from the language's TOML file.
Everything returned is plain text: escaping is the writers' job (HTML autoescape, latex.escape).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from valstat import __version__, stats
from valstat.report.analysis import Analysis, confounded, finite_sample_methods
from valstat.results import ArmSummary
from valstat.report.text import Strings, epoch, finite, num, pct, pts, pval, rate, sig

#: Coverage table of valstat's intervals, written by benchmarks/calibration.py.
CALIBRATION = Path(__file__).with_name("calibration.json")


@dataclass
class Table:
    """One table: display rows (formatted text) for HTML/LaTeX, a raw frame for the CSV twin."""

    name: str
    caption: str
    columns: list
    rows: list
    frame: pd.DataFrame
    align: str = ""


def _arm_info(analysis: Analysis, arm: str) -> ArmSummary:
    return analysis.summary.arms[arm]


def _schedule(analysis: Analysis, arm: str) -> dict:
    config = (analysis.meta.get("arms_config") or {}).get(arm) or {}
    return config.get("schedule") if isinstance(config.get("schedule"), dict) else {}


# --------------------------------------------------------------------------- coverage, setup

def coverage(analysis: Analysis, S: Strings) -> list:
    c = analysis.coverage
    lines = []
    if c["planned"] is None:
        lines.append(S("coverage.unknown", runs=c["runs"]))
    elif c["complete"]:
        lines.append(S("coverage.complete", runs=c["runs"], arms=c["arms"],
                       seeds=c["planned_seeds"] or c["seeds"],
                       folds=c["planned_folds"] or c["folds"]))
    else:
        lines.append(S("coverage.partial", runs=c["runs"], planned=c["planned"]))
    if c["diverged"]:
        key = "coverage.diverged_counted" if analysis.settings.count_diverged else "coverage.diverged"
        lines.append(S(key, count=c["diverged"]))
    if c["missing_arms"]:
        lines.append(S("coverage.missing_arms", arms=", ".join(map(str, c["missing_arms"]))))
    return lines


def setup(analysis: Analysis, S: Strings) -> list:
    """(label, value) rows describing data, model, optimiser, schedule, seeds and versions."""
    meta = analysis.meta
    first = analysis.arms[0]
    config = (meta.get("arms_config") or {}).get(first) or {}
    data = config.get("data") or {}
    training = config.get("training") or {}
    schedule = config.get("schedule") or {}
    model = config.get("model") or {}
    dataset = meta.get("dataset") or {}
    summary_model = (meta.get("model_summary") or {}).get(first) or {}
    unknown = S["setup.unknown"]
    rows = []
    if meta.get("experiment"):
        rows.append((S["setup.experiment"], str(meta["experiment"])))
    if meta.get("description"):
        rows.append((S["setup.description"], str(meta["description"])))
    source = dataset.get("source") or data.get("source")
    if source:
        rows.append((S["setup.source"], S["setup.source_digits"] if source == "digits"
                     else str(source)))
    if dataset.get("n_images"):
        rows.append((S["setup.images"], str(dataset["n_images"])))
    counts = dataset.get("class_counts") or {}
    names = dataset.get("class_names") or list(counts)
    if names:
        rows.append((S["setup.classes"], ", ".join(
            f"{name} ({counts[name]})" if name in counts else str(name) for name in names)))
    sizes = sorted({n for n in analysis.val_sizes.values() if n})
    rows.append((S["setup.val_size"], ", ".join(map(str, sizes)) or unknown))
    if data.get("train_size") and source == "digits":
        rows.append((S["setup.train_size"], str(data["train_size"])))
    n_truth = dataset.get("n_truth")
    if n_truth is None:
        truth = pd.to_numeric(analysis.runs.get("n_truth"), errors="coerce").dropna()
        n_truth = int(truth.max()) if len(truth) else None
    rows.append((S["setup.truth_size"], str(n_truth) if n_truth else S["setup.truth_absent"]))
    if model or summary_model:
        rows.append((S["setup.model"], S("setup.model_value",
                     input="×".join(map(str, summary_model.get("input") or
                                        [data.get("image_size", "?")] * 2 + [3])),
                     filters=", ".join(map(str, summary_model.get("filters") or [])) or unknown,
                     dense=summary_model.get("dense_units", model.get("dense_units", unknown)),
                     dropout=model.get("dropout", unknown),
                     bn=S["page.yes"] if model.get("batch_norm") else S["page.no"])))
    if summary_model.get("params"):
        rows.append((S["setup.params"], f"{int(summary_model['params']):,}"))
    if training:
        text = S("setup.optimiser_value", optimizer=training.get("optimizer", unknown),
                 lr=rate(training.get("learning_rate")), batch=training.get("batch_size", "?"),
                 epochs=training.get("epochs", "?"), loss=training.get("loss", unknown))
        if training.get("optimizer") == "sgd":
            text += S("setup.momentum", momentum=training.get("momentum", 0))
        rows.append((S["setup.optimiser"], text))
    if schedule:
        rows.append((S["setup.schedule"], _schedule_text(schedule, S)))
    sweep = meta.get("sweep") or {}
    rows.append((S["setup.seeds"], S("setup.seeds_value",
                 seeds=sweep.get("seeds", analysis.coverage["seeds"]),
                 folds=sweep.get("folds", analysis.coverage["folds"]),
                 vary=", ".join(sweep.get("vary") or []) or unknown)))
    versions = meta.get("versions") or {}
    if not versions and len(analysis.runs):
        run = analysis.runs.iloc[0]
        versions = {"python": run.get("python_version"), "tensorflow": run.get("tf_version"),
                    "keras": run.get("keras_version")}
    if any(versions.values()):
        rows.append((S["setup.versions"], S("setup.versions_value",
                     python=versions.get("python") or unknown,
                     tensorflow=versions.get("tensorflow") or unknown,
                     keras=versions.get("keras") or unknown)))
    if meta.get("config_hash"):
        rows.append((S["setup.config_hash"], str(meta["config_hash"])))
    return rows


def _schedule_text(schedule: dict, S: Strings) -> str:
    if schedule.get("kind", "reduce_on_plateau") != "reduce_on_plateau":
        return S["setup.schedule_constant"]
    return S("setup.schedule_plateau", monitor=schedule.get("monitor", "?"),
             factor=schedule.get("factor", "?"), patience=schedule.get("patience", "?"),
             min_delta=schedule.get("min_delta", "?"), min_lr=schedule.get("min_lr", "?"))


def _flatten(settings: dict, prefix="") -> dict:
    out = {}
    for key, value in (settings or {}).items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def arm_differences(analysis: Analysis, S: Strings) -> list:
    """(arm, text) for each arm: the settings where it differs from the first arm."""
    config = analysis.meta.get("arms_config") or {}
    if len(analysis.arms) < 2:
        return []
    base = _flatten(config.get(analysis.arms[0]) or {})
    out = [(analysis.arms[0], S["setup.same_as_first"])]
    for arm in analysis.arms[1:]:
        flat = _flatten(config.get(arm) or {})
        diffs = [f"{k} = {flat.get(k)}" for k in sorted(set(base) | set(flat))
                 if flat.get(k) != base.get(k)]
        out.append((arm, "; ".join(diffs) or S["page.none"]))
    return out


# --------------------------------------------------------------------------- findings

def findings(analysis: Analysis, S: Strings) -> list:
    """[{title, paragraphs: [str]}] answering the founding questions, with numbers."""
    out = [_lattice(analysis, S), _drop(analysis, S), _flat(analysis, S),
           _smooth(analysis, S), _spread(analysis, S), _selection(analysis, S)]
    if len(analysis.arms) > 1 and analysis.summary.comparisons:
        out.append(_compare(analysis, S))
    return [f for f in out if f and f["paragraphs"]]


def _lattice(analysis, S):
    arm = analysis.arms[0]
    one = analysis.one_run_interval.get(arm)
    n = analysis.val_sizes.get(arm)
    if not one or not n:
        return None
    cp_low, cp_high = stats.binomial_interval(one["k"], n, analysis.settings.level, "clopper-pearson")
    paragraphs = [S("findings.lattice_body", n=n, step=pts(1 / n), k=one["k"],
                    acc=pct(one["k"] / n), low=pct(one["low"]), high=pct(one["high"]),
                    cp_low=pct(cp_low), cp_high=pct(cp_high))]
    sizes = {a: analysis.val_sizes.get(a) for a in analysis.arms}
    if len({v for v in sizes.values() if v}) > 1:
        paragraphs.append(S("findings.lattice_mixed", sizes=", ".join(
            f"{a}: {v}" for a, v in sizes.items())))
    return {"id": "lattice", "title": S("findings.lattice_title", n=n, step=pts(1 / n)),
            "paragraphs": paragraphs}


def _drop(analysis, S):
    paragraphs = []
    example = analysis.example
    if example and example["drop"]:
        d, ch, n = example["drop"], example["changes"], example["n"]
        k = ch.set_index("epoch")["k"]
        paragraphs.append(S("findings.drop_example", run=example["run_id"], arm=example["arm"],
                            k0=int(k[d["from_epoch"]]), k1=int(k[d["to_epoch"]]), n=n,
                            e0=d["from_epoch"], e1=d["to_epoch"], images=S.images(-d["images"]),
                            points=pts(-d["images"] / n)))
        key = "drop_within" if d["within_noise"] else "drop_beyond"
        if not example["paired"]:
            key += "_fisher"
        paragraphs.append(S(f"findings.{key}", p=pval(d["p_value"]), n=n,
                            low=pts(d["low"], signed=True), high=pts(d["high"], signed=True)))
        paragraphs.append(drop_scan_text(d, n, S))
    elif example:
        paragraphs.append(S["findings.drop_none"])
    for arm in analysis.arms:
        moves = _arm_info(analysis, arm).moves_within_noise or {}
        if moves.get("moves"):
            paragraphs.append(S("findings.moves", arm=arm, within=moves["within_noise"],
                                moves=moves["moves"], share=pct(moves["share"], 0)))
        else:
            paragraphs.append(S("findings.moves_none", arm=arm))
    return {"id": "drop", "title": S["findings.drop_title"], "paragraphs": paragraphs}


def drop_scan_text(drop, n, S) -> str:
    """The largest drop's scan adjustment and the smallest loss the test could flag."""
    if drop.get("smallest_flagged") is None:
        return S("findings.drop_scan_none", scanned=drop["scanned"], p_adj=pval(drop["p_adjusted"]), n=n)
    return S("findings.drop_scan", scanned=drop["scanned"], p_adj=pval(drop["p_adjusted"]), n=n,
             flag=S.images(drop["smallest_flagged"]))


def _flat(analysis, S):
    paragraphs = []
    for arm in analysis.arms:
        info = _arm_info(analysis, arm)
        schedule = _schedule(analysis, arm)
        detail = analysis.lr_detail.get(arm) or {}
        collapse = info.lr_collapse or {}
        runs = int(((analysis.runs["arm"] == arm) & analysis.runs["counted"]).sum())
        if detail.get("initial") is None:
            continue
        if schedule.get("kind") == "constant":
            paragraphs.append(S("findings.lr_constant", arm=arm, initial=rate(detail["initial"])))
            continue
        if collapse.get("runs"):
            paragraphs.append(S("findings.lr_collapse", arm=arm, collapsed=collapse["runs"],
                                runs=runs, initial=rate(detail["initial"]),
                                first=epoch(detail["first"]),
                                median=epoch(collapse.get("median_epoch")),
                                last=epoch(detail["last"]), lowest=rate(detail["lowest"]),
                                after=epoch(collapse.get("median_epochs_after"))))
        else:
            paragraphs.append(S("findings.lr_none", arm=arm, initial=rate(detail["initial"])))
        cuts = info.plateau_cuts or {}
        if cuts.get("cuts"):
            if "acc" in str(cuts.get("monitor")):
                paragraphs.append(S("findings.lr_ties", arm=arm, cuts=cuts["cuts"],
                                    ties=cuts["after_ties_only"], worse=cuts["after_worse"],
                                    patience=cuts.get("patience"), monitor=cuts["monitor"],
                                    n=analysis.val_sizes.get(arm)))
            else:
                paragraphs.append(S("findings.lr_cuts_loss", arm=arm, cuts=cuts["cuts"],
                                    worse=cuts["after_worse"], monitor=cuts["monitor"]))
    with_predictions = sum(((_arm_info(analysis, a).one_class_collapse or {})
                            .get("runs_with_predictions") or 0) for a in analysis.arms)
    if analysis.one_class:
        paragraphs.append(S("findings.one_class_count", count=len(analysis.one_class),
                            runs=with_predictions))
        first, *others = analysis.one_class
        paragraphs.append(S("findings.one_class", run=first["run_id"], arm=first["arm"],
                            cls=first["class_name"], e=first["from_epoch"],
                            epochs=first["epochs"], k=_or(first["k"]), n=_or(first["n"]),
                            acc=pct(first["final"])))
        if others:
            sep = "；" if S.lang == "zh" else "; "
            paragraphs.append(S("findings.one_class_more", items=sep.join(
                S("findings.one_class_item", run=o["run_id"], cls=o["class_name"],
                  e=o["from_epoch"], k=_or(o["k"]), n=_or(o["n"])) for o in others)))
    elif with_predictions:
        paragraphs.append(S("findings.one_class_none", runs=with_predictions))
    else:
        paragraphs.append(S["findings.one_class_unknown"])
    return {"id": "flat", "title": S["findings.flat_title"], "paragraphs": paragraphs}


def _or(value, missing="?"):
    return missing if value is None else value


def _smooth(analysis, S):
    arm = analysis.arms[0]
    n = analysis.val_sizes.get(arm) or "n"
    paragraphs = [S("findings.smooth_body", n=n)]
    for a in analysis.arms:
        st = analysis.steps.get(a) or {}
        if st.get("moves") and st.get("loss_moves"):
            paragraphs.append(S("findings.smooth_numbers", arm=a, ties=st["ties"],
                                moves=st["moves"], tie_share=pct(st["tie_share"], 0),
                                acc_move=pts(st["median_acc_move"]),
                                loss_changed=st["loss_moves"] - st["loss_same"],
                                loss_moves=st["loss_moves"],
                                loss_move=sig(st["median_loss_move"])))
    return {"id": "smooth", "title": S["findings.smooth_title"], "paragraphs": paragraphs}


def _component_name(S, component):
    return S[f"tables.comp_{component}"] if f"comp_{component}" in S["tables"] else component


def _finite_sample_text(info, n, S) -> str:
    """Jordan's share of within-fold variance, or what each run's own draw of images gives."""
    method = info.get("method", "jordan-independent-errors")
    if method == "jordan-independent-errors":
        return S("findings.spread_finite", share=pct(info["finite_sample_share"], 0), n=n,
                 folds=info["folds"])
    text = S("findings.spread_draw", n=info.get("n") or n,
             sd=pts(np.sqrt(max(info["sampling_variance"], 0.0))),
             share=pct(info["finite_sample_share"], 0),
             rest=pts(np.sqrt(max(info.get("model_variance_clipped") or 0.0, 0.0))))
    if method == "stratified-per-run" and finite(info.get("binomial_variance")):
        text += " " + S("findings.spread_draw_stratified",
                        binomial_sd=pts(np.sqrt(max(info["binomial_variance"], 0.0))),
                        binomial_share=pct(info.get("binomial_share"), 0))
    elif method == "binomial-per-run":
        text += " " + S["findings.spread_draw_binomial"]
    return text


def _spread(analysis, S):
    paragraphs = []
    for arm in analysis.arms:
        info = _arm_info(analysis, arm)
        final = info.final_val_accuracy or {}
        used = final.get("n") or 0
        if used < 2 or not finite(final.get("sd")):
            paragraphs.append(S("findings.spread_one", arm=arm, runs=used))
            continue
        paragraphs.append(S("findings.spread_sd", arm=arm, runs=used,
                            mean=pct(final["estimate"]), low=pct(final["low"]),
                            high=pct(final["high"]), sd=pts(final["sd"]),
                            pi_low=pct(final["pi_low"]), pi_high=pct(final["pi_high"])))
        conditional = final.get("conditional")
        if conditional and final.get("method") == "crossed-anova":
            design = S["findings.design_shared"] if final.get("design") == "one shared split" \
                else S["findings.design_folds"]
            paragraphs.append(S("findings.spread_shared", arm=arm, design=design,
                                low=pct(conditional["low"]), high=pct(conditional["high"])))
        elif conditional:
            paragraphs.append(S("findings.spread_conditional", arm=arm))
        finite_sample = info.finite_sample
        if finite_sample and finite(finite_sample.get("finite_sample_share")):
            paragraphs.append(_finite_sample_text(finite_sample, analysis.val_sizes.get(arm), S))
        rows = [r for r in info.variance_components or []
                if r["component"] in ("split", "seed", "residual")]
        if rows and not confounded(analysis, arm):
            parts = [S("findings.spread_part", name=_component_name(S, r["component"]),
                       share=pct(r["share"], 0) if finite(r.get("share"))
                       else S["findings.spread_na"]) for r in rows]
            paragraphs.append(S("findings.spread_components", method=rows[0]["method"],
                                parts=", ".join(parts)))
    if any(confounded(analysis, arm) for arm in analysis.arms):
        paragraphs.append(S["findings.spread_confounded"])
    return {"id": "spread", "title": S["findings.spread_title"], "paragraphs": paragraphs}


def _selection(analysis, S):
    paragraphs = []
    any_truth = False
    n_truth = _n_truth(analysis)
    for arm in analysis.arms:
        info = _arm_info(analysis, arm)
        optimism = info.optimism
        if not optimism:
            continue
        rules = {r["rule"]: r for r in optimism.get("rules") or []}
        best = rules.get("best_val_accuracy") or {}
        if not finite(best.get("mean")):
            continue
        any_truth = True
        noise = optimism.get("expected_from_noise") or {}
        paragraphs.append(S("findings.selection_body", arm=arm,
                            epochs=noise.get("epochs") or _epochs(analysis, arm),
                            n=analysis.val_sizes.get(arm), mean=pts(best["mean"]),
                            ci=_ci_text(S, best), max=pts(best["max"]), runs=best.get("n_runs"),
                            n_truth=n_truth or "?"))
        independent = optimism.get("expected_from_noise_independent") or {}
        if finite(noise.get("expected_optimism")) and (noise.get("epochs") or 0) > 1:
            if "true_accuracy" in noise:  # no per-image predictions: independent epochs
                paragraphs.append(S("findings.selection_noise_independent",
                                    noise=pts(noise["expected_optimism"], signed=True),
                                    epochs=noise["epochs"], n=noise["n"],
                                    p=pct(noise["true_accuracy"])))
            else:
                paragraphs.append(S("findings.selection_noise",
                                    noise=pts(noise["expected_optimism"], signed=True),
                                    epochs=noise["epochs"], n=noise["n"],
                                    independent=pts(independent.get("expected_optimism"), signed=True)))
        final = rules.get("final") or {}
        if finite(final.get("mean")):
            paragraphs.append(S("findings.selection_final", mean=pts(final["mean"], signed=True),
                                ci=_ci_text(S, final)))
    if not any_truth:
        arm = analysis.arms[0]
        noise = _noise_without_truth(analysis, arm)
        if noise:
            paragraphs.append(S("findings.selection_absent", epochs=noise["epochs"],
                                n=noise["n"], noise=pts(noise["expected_optimism"],
                                                        signed=True)))
        else:
            paragraphs.append(S["findings.selection_absent_plain"])
    return {"id": "selection", "title": S["findings.selection_title"], "paragraphs": paragraphs}


def _ci_text(S, row) -> str:
    """'95% CI -4.5 to +20.7' in points, or a note when there is no interval (one run)."""
    if finite(row.get("low")) and finite(row.get("high")):
        return S("findings.ci", low=pts(row["low"], signed=True),
                 high=pts(row["high"], signed=True))
    return S["findings.ci_none"]


def _epochs(analysis, arm):
    part = analysis.epochs[analysis.epochs["arm"] == arm]
    return int(part.groupby("run_id")["epoch"].count().median()) if len(part) else None


def _n_truth(analysis):
    dataset = analysis.meta.get("dataset") or {}
    if dataset.get("n_truth"):
        return int(dataset["n_truth"])
    values = pd.to_numeric(analysis.runs.get("n_truth"), errors="coerce").dropna()
    return int(values.max()) if len(values) and values.max() > 0 else None


def _noise_without_truth(analysis, arm):
    """Expected optimism of the best epoch from noise alone (stats.expected_max_noise)."""
    final = _arm_info(analysis, arm).final_val_accuracy or {}
    n = analysis.val_sizes.get(arm)
    epochs_run = _epochs(analysis, arm)
    if not n or not epochs_run or not finite(final.get("estimate")):
        return None
    p = min(max(float(final["estimate"]), 0.0), 1.0)
    return stats.expected_max_noise(n, epochs_run, p)


def _compare(analysis, S):
    paragraphs = []
    wide = analysis.paired.pivot_table(index="unit", columns="arm", values="final")
    for comp in analysis.summary.comparisons:
        a, b = comp.a, comp.b
        if not comp.pairs:
            continue
        both = wide[[a, b]].dropna() if a in wide and b in wide else pd.DataFrame()
        diff = (both[b] - both[a]).to_numpy() if len(both) else np.array([])
        poi = comp.probability_of_improvement or {}
        paragraphs.append(S("findings.compare_body", a=a, b=b, pairs=comp.pairs,
                            wins=int((diff > 0).sum()), ties=int((diff == 0).sum()),
                            losses=int((diff < 0).sum()), p=num(poi.get("estimate")),
                            low=num(poi.get("low")), high=num(poi.get("high"))))
        t = comp.corrected_t
        if t and finite(t.get("p_value")):
            paragraphs.append(S("findings.compare_t", t=num(t["t"]), df=t["df"],
                                p=pval(t["p_value"])))
            designs = {(_arm_info(analysis, arm).final_val_accuracy or {}).get("design")
                       for arm in (a, b)}
            if designs - {"own split per run", None}:
                paragraphs.append(S["findings.compare_t_shared"])
        if comp.mcnemar:
            paragraphs.append(S("findings.compare_mcnemar", sig=comp.mcnemar_significant,
                                m=len(comp.mcnemar)))
    return {"id": "compare", "title": S["findings.compare_title"], "paragraphs": paragraphs}


# --------------------------------------------------------------------------- advice

def advice(analysis: Analysis, S: Strings) -> list:
    out = []
    adv = analysis.advice
    hw = analysis.halfwidth.get("current") if analysis.halfwidth else None
    if adv.get("sizes") and hw:
        sizes = adv["sizes"]
        out.append(S("advice.val_size", p=pct(adv["p"], 0), hw=pts(hw["halfwidth"]),
                     n=adv["n"], n5=sizes.get(0.05) or "?", n25=sizes.get(0.025) or "?"))
    mdd = adv.get("mdd")
    if mdd and finite(mdd.get("increase")) and finite(mdd.get("decrease")):
        out.append(S("advice.mdd", n=mdd["n"], up=pts(mdd["increase"]),
                     down=pts(abs(mdd["decrease"]))))
    elif mdd and finite(mdd.get("decrease")):
        out.append(S("advice.mdd_down", n=mdd["n"], down=pts(abs(mdd["decrease"]))))
    if adv.get("runs_needed"):
        pairs = max([c.pairs or 0 for c in analysis.summary.comparisons],
                    default=0) or analysis.coverage["seeds"] * analysis.coverage["folds"]
        out.append(S("advice.runs", gamma=adv.get("gamma", 0.75), runs=adv["runs_needed"],
                     have=pairs))
    out += _schedule_advice(analysis, S)
    if analysis.one_class:
        out.append(S("advice.one_class", count=len(analysis.one_class)))
    out.append(S["advice.test_set"])
    out.append(S["advice.report_style"])
    return out


def _schedule_advice(analysis, S):
    out = []
    collapsed_any = False
    for arm in analysis.arms:
        info = _arm_info(analysis, arm)
        schedule = _schedule(analysis, arm)
        collapse = info.lr_collapse or {}
        cuts = info.plateau_cuts or {}
        if schedule.get("kind") == "constant" or not collapse.get("runs"):
            continue
        collapsed_any = True
        out.append(S("advice.schedule", monitor=schedule.get("monitor", cuts.get("monitor")),
                     patience=schedule.get("patience", cuts.get("patience")),
                     collapsed=collapse["runs"], runs=info.n_runs, arm=arm,
                     ties=cuts.get("after_ties_only", 0), cuts=cuts.get("cuts", 0),
                     lowest=rate((analysis.lr_detail.get(arm) or {}).get("lowest"))))
        break
    if not collapsed_any:
        out.append(S["advice.schedule_ok"])
    base = analysis.arms[0]
    base_final = (_arm_info(analysis, base).final_val_accuracy or {}).get("estimate")
    for arm in analysis.arms[1:]:
        if _schedule(analysis, arm).get("kind") == "constant" and \
                _schedule(analysis, base).get("kind") != "constant":
            final = (_arm_info(analysis, arm).final_val_accuracy or {}).get("estimate")
            if finite(final) and finite(base_final):
                out.append(S("advice.schedule_constant", arm=arm, mean=pct(final),
                             base_mean=pct(base_final), base=base))
    return out


# --------------------------------------------------------------------------- methods

def methods(analysis: Analysis, S: Strings) -> str:
    """The methods paragraph, plain text with [@key] citations."""
    c = analysis.coverage
    sizes = sorted({n for n in analysis.val_sizes.values() if n})
    parts = [S("methods.runs", runs=c["runs"], arms=c["arms"], seeds=c["seeds"],
               folds=c["folds"], n=", ".join(map(str, sizes)) or "?"),
             S["methods.binomial"], S["methods.moves"]]
    tests = {(_arm_info(analysis, a).moves_within_noise or {}).get("test") or ""
             for a in analysis.arms}
    if any("fisher" in t for t in tests):
        parts.append(S["methods.moves_fisher"])
    parts += [S["methods.means"], S["methods.variance"]]
    methods_used = finite_sample_methods(analysis)
    if "jordan-independent-errors" in methods_used:
        parts.append(S["methods.variance_jordan"])
    for method in ("stratified", "binomial"):
        if f"{method}-per-run" in methods_used:
            parts.append(S[f"methods.variance_{method}"])
    if any(confounded(analysis, a) for a in analysis.arms):
        parts.append(S["methods.variance_confounded"])
    parts.append(S["methods.schedule"])
    if len(analysis.arms) > 1:
        parts.append(S["methods.compare"])
    if len(analysis.selection):
        parts.append(S("methods.selection", n_truth=_n_truth(analysis) or "?"))
    parts.append(S["methods.sizes"])
    calibration = json.loads(CALIBRATION.read_text(encoding="utf-8"))
    parts.append(S("methods.coverage", reps=calibration["reps"],
                   **{key: f"{value:.2f}" for key, value in calibration["coverage"].items()}))
    parts.append(S("methods.software", version=__version__))
    return " ".join(parts)


# --------------------------------------------------------------------------- tables

def tables(analysis: Analysis, S: Strings) -> list:
    out = [_arms_table(analysis, S)]
    comparisons = _comparisons_table(analysis, S)
    if comparisons:
        out.append(comparisons)
    variance = _variance_table(analysis, S)
    if variance:
        out.append(variance)
    optimism = _optimism_table(analysis, S)
    if optimism:
        out.append(optimism)
    return out


def _ci(info, key_low="low", key_high="high"):
    if not info or not finite(info.get(key_low)):
        return "–"
    return f"{pct(info[key_low])} – {pct(info[key_high])}"


def _arms_table(analysis, S):
    """Per-arm summary, displayed with one column per arm (rows = quantities); tidy CSV."""
    T = S.section("tables")
    labels = [T["runs"], T["n"], T["final_mean"], T["final_ci"], T["final_sd"], T["final_pi"],
              T["best_mean"], T["best_ci"], T["within"], T["lr_collapsed"], T["lr_epoch"],
              T["one_class"]]
    columns_by_arm, raw = [], []
    for arm in analysis.arms:
        info = _arm_info(analysis, arm)
        final = info.final_val_accuracy or {}
        best = info.best_val_accuracy or {}
        moves = info.moves_within_noise or {}
        collapse = info.lr_collapse or {}
        one = info.one_class_collapse or {}
        runs_text = str(info.n_runs)
        if info.n_diverged:
            runs_text += f" ({info.n_diverged} {T['diverged'].lower()})"
        columns_by_arm.append([
            runs_text, str(info.val_size or "–"), pct(final.get("estimate")),
            _ci(final), pts(final.get("sd")), _ci(final, "pi_low", "pi_high"),
            pct(best.get("estimate")), _ci(best),
            f"{moves.get('within_noise', 0)}/{moves.get('moves', 0)}" if moves.get("moves")
            else "–",
            str(collapse.get("runs", "–")), epoch(collapse.get("median_epoch")),
            str(one.get("runs_ending_collapsed", "–"))])
        raw.append({"arm": arm, "runs": info.n_runs, "diverged": info.n_diverged,
                    "val_size": info.val_size,
                    "final_mean": final.get("estimate"), "final_low": final.get("low"),
                    "final_high": final.get("high"), "final_sd": final.get("sd"),
                    "final_pi_low": final.get("pi_low"), "final_pi_high": final.get("pi_high"),
                    "best_mean": best.get("estimate"), "best_low": best.get("low"),
                    "best_high": best.get("high"),
                    "moves": moves.get("moves"), "moves_within_noise": moves.get("within_noise"),
                    "lr_collapsed_runs": collapse.get("runs"),
                    "lr_collapse_median_epoch": collapse.get("median_epoch"),
                    "one_class_runs": one.get("runs_ending_collapsed")})
    rows = [[label] + [col[i] for col in columns_by_arm] for i, label in enumerate(labels)]
    columns = [T["arm"]] + list(analysis.arms)
    return Table("arms", S["tables.arms_caption"], columns, rows, pd.DataFrame(raw),
                 align="l" + "r" * len(analysis.arms))


def _comparisons_table(analysis, S):
    comps = [c for c in analysis.summary.comparisons if c.pairs]
    if not comps:
        return None
    T = S.section("tables")
    columns = [T["a"], T["b"], T["pairs"], T["p_improve"], T["p_improve_ci"], T["t"], T["df"],
               T["p_t"], T["mcnemar_sig"]]
    rows, raw = [], []
    for c in comps:
        poi = c.probability_of_improvement or {}
        t = c.corrected_t or {}
        rows.append([c.a, c.b, str(c.pairs), num(poi.get("estimate")),
                     f"{num(poi.get('low'))} – {num(poi.get('high'))}" if poi else "–",
                     num(t.get("t")), str(t.get("df", "–")),
                     pval(t.get("p_value")).replace("= ", "") if t else "–",
                     f"{c.mcnemar_significant}/{len(c.mcnemar or [])}"])
        raw.append({"a": c.a, "b": c.b, "pairs": c.pairs,
                    "p_a_beats_b": poi.get("estimate"), "p_low": poi.get("low"),
                    "p_high": poi.get("high"), "t": t.get("t"), "df": t.get("df"),
                    "p_value": t.get("p_value"),
                    "mcnemar_significant": c.mcnemar_significant,
                    "mcnemar_pairs": len(c.mcnemar or [])})
    return Table("comparisons", S["tables.comparisons_caption"], columns, rows,
                 pd.DataFrame(raw), align="llrrrrrrr")


def _variance_table(analysis, S):
    frame = analysis.variance
    if frame is None or frame.empty:
        return None
    T = S.section("tables")
    columns = [T["arm"], T["component"], T["variance"], T["sd"], T["share"], T["method"]]
    rows = []
    for r in frame.itertuples(index=False):
        var = r.variance
        rows.append([r.arm, _component_name(S, r.component),
                     f"{var:.5f}" if finite(var) else "–",
                     pts(np.sqrt(max(var, 0))) if finite(var) else "–",
                     pct(r.share, 0) if finite(r.share) else "–", str(r.method)])
    raw = frame.assign(sd_points=np.sqrt(frame["variance"].clip(lower=0)) * 100)
    return Table("variance", S["tables.variance_caption"], columns, rows, raw,
                 align="llrrrl")


def _optimism_table(analysis, S):
    T = S.section("tables")
    rows, raw = [], []
    for arm in analysis.arms:
        optimism = _arm_info(analysis, arm).optimism or {}
        for r in optimism.get("rules") or []:
            if not finite(r.get("mean")):
                continue
            rows.append([arm, T.get(f"rule_{r['rule']}", r["rule"]),
                         pts(r["mean"], signed=True),
                         f"{pts(r['low'], signed=True)} – {pts(r['high'], signed=True)}",
                         pts(r["max"], signed=True), str(r.get("n_runs"))])
            raw.append({"arm": arm, **r})
    if not rows:
        return None
    columns = [T["arm"], T["rule"], T["mean"], T["ci"], T["max"], T["runs"]]
    return Table("optimism", S["tables.optimism_caption"], columns, rows, pd.DataFrame(raw),
                 align="llrrrr")
