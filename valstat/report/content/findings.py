"""The report's findings (one question each, answered with numbers) and its advice.

Numbers come from the Analysis (summary + stats); words from the language's TOML file.
Everything returned is plain text: escaping is the writers' job (HTML autoescape, latex.escape).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from valstat import stats
from valstat.core.design import shares_images
from valstat.report.analysis import Analysis, confounded
from valstat.report.stats_text import detect_words
from valstat.stats.intervals import COLLAPSE_AWARE_BELOW
from valstat.report.text import Strings, dof, epoch, finite, num, pct, pts, pval, rate, ratio_end, sig, unequal_val_sizes
from valstat.report.content.common import _arm_info, _component_name, _n_truth, _schedule
from valstat.stats.paired import MIN_SPREAD_PAIRS
from valstat.results import LargestDrop, SpreadChange


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
    mixed = len({v for v in sizes.values() if v}) > 1
    if mixed:
        paragraphs.append(S("findings.lattice_mixed", arm=arm, sizes=", ".join(
            f"{a}: {v}" for a, v in sizes.items())))
    title = S["findings.lattice_title_mixed"] if mixed else S("findings.lattice_title", n=n, step=pts(1 / n))
    return {"id": "lattice", "title": title, "paragraphs": paragraphs}


def _drop(analysis, S):
    paragraphs = []
    example = analysis.example
    if example and example.drop:
        d, n = example.drop, example.n
        k = example.changes.set_index("epoch")["k"]
        paragraphs.append(S("findings.drop_example", run=example.run_id, arm=example.arm,
                            k0=int(k[d.from_epoch]), k1=int(k[d.to_epoch]), n=n,
                            e0=d.from_epoch, e1=d.to_epoch, images=S.images(-d.images),
                            points=pts(-d.images / n)))
        paragraphs += drop_texts(d, n, example.paired, S)
    elif example:
        paragraphs.append(S["findings.drop_none"])
    for arm in analysis.arms:
        moves = _arm_info(analysis, arm).moves_within_noise
        if moves and moves.moves:
            paragraphs.append(S("findings.moves", arm=arm, within=moves.within_noise,
                                moves=moves.moves, share=pct(moves.share, 0)))
            paragraphs += [moves_detect_text(d, S) for d in moves.detectable]
        else:
            paragraphs.append(S("findings.moves_none", arm=arm))
    return {"id": "drop", "title": S["findings.drop_title"], "paragraphs": paragraphs}


def moves_detect_text(detectable, S) -> str:
    """The smallest drop the moves' test detects with 80% power (stats.move_detectability)."""
    key = "findings.moves_detect" if detectable.images is not None else "findings.moves_detect_none"
    return S(key, n=detectable.n, **detect_words(detectable, S))


def drop_texts(drop: LargestDrop, n, paired, S) -> list:
    """The largest drop's verdict with the Bonferroni-adjusted p it uses (McNemar when
    `paired`, else Fisher), then the scan adjustment and, for a drop within noise, the smallest
    loss the test could flag (McNemar: given the images that changed answer)."""
    key = ("drop_within" if drop.within_noise else "drop_beyond") + ("" if paired else "_fisher")
    moves = S.count("moves", drop.scanned)
    verdict = S(f"findings.{key}", p_adj=pval(drop.p_adjusted), moves=moves, n=n,
                low=pts(drop.low, signed=True), high=pts(drop.high, signed=True))
    scan = dict(scanned=drop.scanned, moves=moves, p=pval(drop.p_value), n=n)
    if not drop.within_noise:
        return [verdict, S("findings.drop_scan_beyond", **scan)]
    key = "findings.drop_scan"
    if drop.discordant is not None:
        key, scan["changed"] = "findings.drop_scan_paired", S.images(drop.discordant)
    if drop.smallest_flagged is None:
        return [verdict, S(f"{key}_none", **scan)]
    return [verdict, S(key, **scan, flag=S.images(drop.smallest_flagged))]


def _flat(analysis, S):
    paragraphs = []
    for arm in analysis.arms:
        info = _arm_info(analysis, arm)
        schedule = _schedule(analysis, arm)
        detail = analysis.lr_detail.get(arm) or {}
        collapse = info.lr_collapse
        runs = info.n_counted
        if detail.get("initial") is None:
            continue
        if schedule.get("kind") == "constant":
            paragraphs.append(S("findings.lr_constant", arm=arm, initial=rate(detail["initial"])))
            continue
        if collapse and collapse.runs:
            paragraphs.append(S("findings.lr_collapse", arm=arm, collapsed=collapse.runs,
                                runs=runs, initial=rate(detail["initial"]),
                                first=epoch(detail["first"]),
                                median=epoch(collapse.median_epoch),
                                last=epoch(detail["last"]), lowest=rate(detail["lowest"]),
                                after=epoch(collapse.median_epochs_after)))
        else:
            paragraphs.append(S("findings.lr_none", arm=arm, initial=rate(detail["initial"])))
        cuts = info.plateau_cuts
        if cuts and cuts.cuts:
            if cuts.mode == "max":
                paragraphs.append(S("findings.lr_ties", arm=arm, cuts=S.count("rate_cuts", cuts.cuts),
                                    ties=cuts.after_ties_only, worse=cuts.after_worse,
                                    patience_epochs=S.count("epochs", cuts.patience),
                                    patience_ties=S.count("ties", cuts.patience), monitor=cuts.monitor,
                                    n=analysis.val_sizes.get(arm)))
            else:
                paragraphs.append(S("findings.lr_cuts_loss", arm=arm, cuts=S.count("rate_cuts", cuts.cuts),
                                    worse=cuts.after_worse, monitor=cuts.monitor))
    collapses = [_arm_info(analysis, a).one_class_collapse for a in analysis.arms]
    with_predictions = sum(c.runs_with_predictions for c in collapses if c)
    if analysis.one_class:
        paragraphs.append(S("findings.one_class_count", count=len(analysis.one_class),
                            runs=with_predictions))
        first, *others = analysis.one_class
        paragraphs.append(S("findings.one_class", run=first["run_id"], arm=first["arm"],
                            cls=first["class_name"], e=first["from_epoch"],
                            epochs=S.count("epochs", first["epochs"]), k=_or(first["k"]), n=_or(first["n"]),
                            acc=pct(first["final"])))
        if others:
            sep = "；" if S.lang == "zh" else "; "
            paragraphs.append(S("findings.one_class_more", items=sep.join(
                S("findings.one_class_item", run=o["run_id"], cls=o["class_name"],
                  e=o["from_epoch"], k=_or(o["k"]), n=_or(o["n"])) for o in others)))
    elif with_predictions:
        paragraphs.append(S("findings.one_class_none", runs=S.count("runs", with_predictions)))
    else:
        paragraphs.append(S["findings.one_class_unknown"])
    return {"id": "flat", "title": S["findings.flat_title"], "paragraphs": paragraphs}


def _or(value, missing="?"):
    return missing if value is None else value


def _smooth(analysis, S):
    sizes = {analysis.val_sizes.get(a) for a in analysis.arms}
    n = next(iter(sizes)) if len(sizes) == 1 and None not in sizes else "n"
    paragraphs = [S("findings.smooth_body", n=n)]
    for a in analysis.arms:
        st = analysis.steps.get(a) or {}
        if st.get("moves") and st.get("loss_moves"):
            key = "findings.smooth_numbers" + ("_all_tied" if st["ties"] == st["moves"] else "")
            paragraphs.append(S(key, arm=a, ties=st["ties"], moves=st["moves"],
                                steps=S.count("steps", st["moves"]),
                                tie_share=pct(st["tie_share"], 0),
                                acc_move=pts(st["median_acc_move"]),
                                loss_changed=st["loss_moves"] - st["loss_same"],
                                loss_steps=S.count("steps", st["loss_moves"]),
                                loss_move=sig(st["median_loss_move"])))
    return {"id": "smooth", "title": S["findings.smooth_title"], "paragraphs": paragraphs}




def collapse_text(interval, S) -> str:
    """What the collapse-aware interval of the mean (method "collapse-mixture") allows for."""
    low, high = (pct(share, 0) for share in interval.share_range)
    shares = low if low == high else S("findings.share_range", low=low, high=high)
    unit = "seeds" if interval.units == "seed" else "runs"
    text = S("findings.spread_collapse", below=S.count(unit, COLLAPSE_AWARE_BELOW), share=pct(interval.collapse_high, 0),
             shares=shares, collapsed=interval.collapsed, runs=interval.n)
    if interval.note:  # the learned runs' mean is bounded by [0, 1] only
        text += " " + S["findings.spread_collapse_few_seeds" if interval.units == "seed" else "findings.spread_collapse_few"]
    return text


def _finite_sample_text(info, n, S) -> str:
    """Jordan's share of within-fold variance, or what each run's own draw of images gives."""
    method = info.method
    if method == "jordan-independent-errors":
        return S("findings.spread_finite", share=pct(info.finite_sample_share, 0), n=n,
                 folds=S.count("val_sets", info.folds))
    text = S("findings.spread_draw", n=info.n or n,
             sd=pts(np.sqrt(max(info.sampling_variance, 0.0))),
             share=pct(info.finite_sample_share, 0),
             rest=pts(np.sqrt(max(info.model_variance_clipped or 0.0, 0.0))))
    if method == "stratified-per-run" and finite(info.binomial_variance):
        text += " " + S("findings.spread_draw_stratified",
                        binomial_sd=pts(np.sqrt(max(info.binomial_variance, 0.0))),
                        binomial_share=pct(info.binomial_share, 0))
    elif method == "binomial-per-run":
        text += " " + S["findings.spread_draw_binomial"]
    return text


def _spread(analysis, S):
    paragraphs = []
    for arm in analysis.arms:
        info = _arm_info(analysis, arm)
        final = info.final_val_accuracy
        used = final.n if final else 0
        if used < 2 or not finite(final.sd):
            paragraphs.append(S("findings.spread_one", arm=arm, runs=S.count("runs", used)))
            continue
        paragraphs.append(S("findings.spread_sd", arm=arm, runs=used,
                            mean=pct(final.estimate), low=pct(final.low),
                            high=pct(final.high), sd=pts(final.sd),
                            pi_low=pct(final.pi_low), pi_high=pct(final.pi_high)))
        if final.method == "collapse-mixture":
            paragraphs.append(collapse_text(final, S))
        conditional = final.conditional
        if conditional and final.scope == "new validation images":
            design = S["findings.design_shared"] if final.design == "one shared split" \
                else S["findings.design_folds"]
            paragraphs.append(S("findings.spread_shared", arm=arm, design=design,
                                low=pct(conditional.low), high=pct(conditional.high)))
        elif conditional:
            paragraphs.append(S("findings.spread_conditional", arm=arm))
        finite_sample = info.finite_sample
        if finite_sample and finite(finite_sample.finite_sample_share):
            paragraphs.append(_finite_sample_text(finite_sample, analysis.val_sizes.get(arm), S))
        rows = [r for r in info.variance_components or []
                if r.component in ("split", "seed", "residual")]
        if rows and not confounded(analysis, arm):
            parts = [S("findings.spread_part", name=_component_name(S, r.component),
                       share=pct(r.share, 0) if finite(r.share)
                       else S["findings.spread_na"]) for r in rows]
            paragraphs.append(S("findings.spread_components", method=rows[0].method,
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
        rules = {r.rule: r for r in optimism.rules}
        best = rules.get("best_val_accuracy")
        if best is None or not finite(best.mean):
            continue
        any_truth = True
        noise = optimism.expected_from_noise
        paragraphs.append(S("findings.selection_body", arm=arm,
                            epochs=_epochs_picked_from(analysis, arm),
                            n=analysis.val_sizes.get(arm), mean=pts(best.mean),
                            ci=_ci_text(S, best), max=pts(best.max),
                            runs=S.count("runs", best.n_runs), n_truth=n_truth or "?"))
        independent = optimism.expected_from_noise_independent
        if noise and finite(noise.expected_optimism) and noise.epochs > 1:
            if noise.true_accuracy is not None:  # no per-image predictions: independent epochs
                paragraphs.append(S("findings.selection_noise_independent",
                                    noise=pts(noise.expected_optimism, signed=True),
                                    epochs=noise.epochs, n=noise.n,
                                    p=pct(noise.true_accuracy)))
            else:
                paragraphs.append(S("findings.selection_noise",
                                    noise=pts(noise.expected_optimism, signed=True),
                                    epochs=noise.epochs, n=noise.n,
                                    independent=pts(independent.expected_optimism, signed=True)))
        final = rules.get("final")
        if final is not None and finite(final.mean):
            key = "findings.selection_final" + ("" if final.mean >= 0 else "_under")
            paragraphs.append(S(key, mean=pts(abs(final.mean)), ci=_ci_text(S, final)))
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
    """'95% CI -4.5 to +20.7' in points of an OptimismRule, or a note when there is no
    interval (one run, or every run the same value)."""
    if finite(row.low) and finite(row.high):
        return S("findings.ci", low=pts(row.low, signed=True),
                 high=pts(row.high, signed=True))
    return S("findings.ci_same", runs=row.n_runs) if row.n_runs >= 2 and row.sd == 0 else S["findings.ci_none"]


def _epochs_picked_from(analysis, arm) -> str:
    """How many epochs the best was picked from in the runs of the selection finding (those
    with a truth accuracy at their chosen epoch): '20', or '12–20' when runs differ."""
    runs = analysis.selection.loc[analysis.selection["arm"] == arm, "run_id"]
    part = analysis.epochs[analysis.epochs["run_id"].isin(runs)]
    counts = part[part["val_accuracy"].notna()].groupby("run_id")["epoch"].count()
    if counts.empty:
        return "?"
    low, high = int(counts.min()), int(counts.max())
    return str(low) if low == high else f"{low}–{high}"


def _epochs(analysis, arm):
    part = analysis.epochs[analysis.epochs["arm"] == arm]
    return int(part.groupby("run_id")["epoch"].count().median()) if len(part) else None




def _noise_without_truth(analysis, arm):
    """Expected optimism of the best epoch from noise alone (stats.expected_max_noise)."""
    final = _arm_info(analysis, arm).final_val_accuracy
    n = analysis.val_sizes.get(arm)
    epochs_run = _epochs(analysis, arm)
    if not n or not epochs_run or not final or not finite(final.estimate):
        return None
    p = min(max(float(final.estimate), 0.0), 1.0)
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
        poi = comp.probability_of_improvement
        different = comp.pairs_on_different_images
        paragraphs.append(S("findings.compare_body_images" if different else "findings.compare_body",
                            a=a, b=b, pairs=S.count("pairs", comp.pairs), different=different,
                            wins=int((diff > 0).sum()), ties=int((diff == 0).sum()),
                            losses=int((diff < 0).sum()), p=num(poi.estimate),
                            low=num(poi.low), high=num(poi.high)))
        sizes = unequal_val_sizes(comp, analysis.val_sizes)
        if sizes:
            paragraphs.append(S("findings.compare_poi_sizes", a=a, b=b, n_a=sizes[0], n_b=sizes[1]))
        t = comp.corrected_t
        finals = [_arm_info(analysis, arm).final_val_accuracy for arm in (a, b)]
        shared = any(final and final.design and shares_images(final.design) for final in finals)
        if t and finite(t.p_value) and t.method == "crossed":
            paragraphs.append(S("findings.compare_t_crossed", t=num(t.t), df=dof(t.df), p=pval(t.p_value),
                                images=_arm_info(analysis, a).val_size))
        elif t and finite(t.p_value):
            paragraphs.append(S("findings.compare_t", t=num(t.t), df=dof(t.df),
                                p=pval(t.p_value)))
            if shared:
                paragraphs.append(S["findings.compare_t_shared"])
        if comp.mcnemar:
            paragraphs.append(S("findings.compare_mcnemar", sig=comp.mcnemar_significant,
                                pairs=S.count("pairs", len(comp.mcnemar))))
        if comp.spread_change:
            paragraphs.append(spread_change_text(comp.spread_change, a, b, S, shared))
    return {"id": "compare", "title": S["findings.compare_title"], "paragraphs": paragraphs}


def spread_change_text(change: SpreadChange, a: str, b: str, S: Strings, shared: bool = False) -> str:
    """How arm b changed arm a's run-to-run spread (stats.paired_spread_change), in sentences:
    the collapsed share (or that collapse is unknown), then the ratio of standard deviations
    among pairs where both learned, or why it is not given; `shared`: the pairs share their
    validation images, so the ratio is for new seeds on these images."""
    m, pairs = change.learned_pairs, change.pairs
    collapsed = change.collapsed
    if collapsed:
        parts = [S("findings.compare_spread_collapsed", a=a, b=b, runs=S.count("runs", pairs),
                   pair_count=S.count("pairs", pairs), ca=collapsed.a,
                   cb=collapsed.b, diff=pts(collapsed.difference, signed=True),
                   low=pts(collapsed.low, signed=True), high=pts(collapsed.high, signed=True))]
        scope = S("findings.compare_spread_learned", m=m)
    else:
        parts = [S("findings.compare_spread_unknown", b=b, m=m)]
        scope = S("findings.compare_spread_all", m=m)
    sd = change.sd
    if sd:
        parts.append(S("findings.compare_spread_sd", scope=scope, a=a, b=b, sd_a=pts(sd.sd_a),
                       sd_b=pts(sd.sd_b), ratio=num(sd.sd_ratio), low=num(sd.sd_low),
                       high=ratio_end(sd.sd_high)))
        if shared:
            parts.append(S["findings.compare_spread_shared"])
    elif change.sd_missing == "constant":
        parts.append(S("findings.compare_spread_constant", scope=scope))
    else:
        key = "findings.compare_spread_few" if collapsed else "findings.compare_spread_few_all"
        parts.append(S(key, m=m, m_pairs=S.count("pairs", m), pairs=pairs, b=b, min=MIN_SPREAD_PAIRS))
    return ("" if S.lang == "zh" else " ").join(parts)


def advice(analysis: Analysis, S: Strings) -> list:
    out = []
    adv = analysis.advice
    for item in adv.get("arms", []):
        sizes, mdd = item["sizes"], item["mdd"]
        parts = [S("advice.val_size", arm=item["arm"], p=pct(item["p"], 0),
                   hw=pts(item["halfwidth"]), n=item["n"], n5=sizes.get(0.05) or "?",
                   n25=sizes.get(0.025) or "?")]
        if mdd and finite(mdd.increase) and finite(mdd.decrease):
            parts.append(S("advice.mdd", n=mdd.n, up=pts(mdd.increase),
                           down=pts(abs(mdd.decrease))))
        elif mdd and finite(mdd.decrease):
            parts.append(S("advice.mdd_down", n=mdd.n, down=pts(abs(mdd.decrease))))
        out.append(("" if S.lang == "zh" else " ").join(parts))
    if adv.get("runs_needed"):
        pairs = max([c.pairs or 0 for c in analysis.summary.comparisons],
                    default=0) or analysis.coverage["seeds"] * analysis.coverage["folds"]
        out.append(S("advice.runs", gamma=adv.get("gamma", 0.75), runs=adv["runs_needed"],
                     have=pairs))
    out += _schedule_advice(analysis, S)
    if analysis.one_class:
        out.append(S("advice.one_class", runs=S.count("runs", len(analysis.one_class))))
    out.append(S["advice.test_set"])
    out.append(S["advice.report_style"])
    return out


def _schedule_advice(analysis, S):
    out = []
    collapsed_any = False
    for arm in analysis.arms:
        info = _arm_info(analysis, arm)
        schedule = _schedule(analysis, arm)
        collapse, cuts = info.lr_collapse, info.plateau_cuts
        if schedule.get("kind") == "constant" or not (collapse and collapse.runs):
            continue
        collapsed_any = True
        out.append(S("advice.schedule", monitor=schedule.get("monitor", cuts.monitor if cuts else None),
                     patience=schedule.get("patience", cuts.patience if cuts else None),
                     collapsed=collapse.runs, runs=info.n_counted, arm=arm,
                     ties=cuts.after_ties_only if cuts else 0, cuts=cuts.cuts if cuts else 0,
                     lowest=rate((analysis.lr_detail.get(arm) or {}).get("lowest"))))
        break
    if not collapsed_any:
        out.append(S["advice.schedule_ok"])
    base = analysis.arms[0]
    base_final = _final_mean(analysis, base)
    for arm in analysis.arms[1:]:
        if _schedule(analysis, arm).get("kind") == "constant" and \
                _schedule(analysis, base).get("kind") != "constant":
            final = _final_mean(analysis, arm)
            if finite(final) and finite(base_final):
                out.append(S("advice.schedule_constant", arm=arm, mean=pct(final),
                             base_mean=pct(base_final), base=base))
    return out


def _final_mean(analysis, arm):
    """Mean final val accuracy of an arm's runs (fraction), None for an arm without runs."""
    final = _arm_info(analysis, arm).final_val_accuracy
    return final.estimate if final else None
