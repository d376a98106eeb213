"""`valstat stats` text: a Summary worded from the [stats] strings of the language's TOML file.

Numbers are formatted by valstat.report.text (pct, pts, num), the one set of formatters.
"""

from __future__ import annotations

import math

from valstat.core.settings import Settings
from valstat.report.text import Strings, finite, num, pct, pts, ratio_end, unequal_val_sizes
from valstat.results import ArmSummary, Detectability, Interval, Summary
from valstat.stats.paired import MIN_SPREAD_PAIRS

#: core.design.validation_design's designs -> their [stats] label.
DESIGN_KEYS = {"own split per run": "stats.design_own", "seeds x own folds": "stats.design_seeds_own",
               "one shared split": "stats.design_shared", "seeds x shared splits": "stats.design_seeds_shared"}


def format_summary(summary: Summary, lang: str = "en") -> str:
    """Compact human-readable text of a summarize() result, one block per arm."""
    S = Strings(lang)
    lines = [S("stats.experiment", name=summary.experiment)]
    for name, arm in summary.arms.items():
        lines += _arm_lines(name, arm, summary.settings, S)
    for comp in summary.comparisons:
        lines.append(_comparison_line(comp, S, {a: summary.arms[a].val_size for a in (comp.a, comp.b)
                                                if a in summary.arms}))
        if comp.spread_change:
            lines.append(_spread_line(comp, S))
    rn = summary.runs_needed
    lines.append(S("stats.runs_needed", gamma=rn.gamma, runs=rn.runs, power=f"{1 - rn.beta:g}",
                   noether=rn.noether_independent))
    for arm, images in summary.unstable_images.items():
        if images:
            items = [S("stats.unstable_item", file=item.file or f"#{item.example}", cls=item.class_name,
                       flips=S.count("flips", item.flips), right=item.final_correct, runs=item.runs)
                     for item in images[:5]]
            lines.append(S("stats.unstable", arm=arm, items=S["stats.sep"].join(items)))
    return "\n".join(lines)


def detect_words(detectable: Detectability, S: Strings) -> dict:
    """{test, basis, images} of one `moves_within_noise.detectable` entry: the test's name and
    what its power assumes (McNemar: the chance churn in images each way; Fisher: the accuracy)."""
    if detectable.test == "mcnemar":
        basis = S("findings.basis_mcnemar", churn=S("units.images_many", n=f"{detectable.churn * detectable.n:.1f}"))
    else:
        basis = S("findings.basis_fisher", acc=pct(detectable.p))
    images = detectable.images
    return {"test": S[f"findings.detect_{detectable.test}"], "basis": basis,
            "images": None if images is None else S.images(images)}


def _or_missing(text: str, S: Strings) -> str:
    return S["stats.missing"] if text == "–" else text


def _arm_lines(name: str, arm: ArmSummary, settings: Settings, S: Strings) -> list:
    left_out = S["stats.left_out"] if arm.n_diverged and not settings.count_diverged else ""
    lines = [S("stats.arm", arm=name, runs=S.count("runs", arm.n_runs), diverged=arm.n_diverged, left_out=left_out,
               n=arm.val_size, step=_or_missing(pct(arm.lattice_step, 2), S))]
    lines.append(_metric(S["stats.final"], arm.final_val_accuracy, S))
    lines.append(_metric(S["stats.best"], arm.best_val_accuracy, S))
    moves = arm.moves_within_noise
    if moves and moves.moves:
        lines.append(S("stats.moves", within=moves.within_noise, moves=moves.moves, share=pct(moves.share),
                       test=moves.test))
        for d in moves.detectable:
            words = detect_words(d, S)
            key = "stats.moves_detect" if d.images is not None else "stats.moves_detect_none"
            lines.append(S(key, **dict(words, images=d.images)))
    lines += _variance_lines(arm, S)
    if arm.lr_collapse:
        lc, pc = arm.lr_collapse, arm.plateau_cuts
        when = S("stats.lr_when", epoch=f"{lc.median_epoch:g}") if lc.median_epoch is not None else ""
        threshold = f"{lc.threshold:.0%}"
        if pc:
            lines.append(S("stats.lr", threshold=threshold, runs=lc.runs, when=when, cuts=pc.cuts,
                           ties=pc.after_ties_only, worse=pc.after_worse))
        else:
            lines.append(S("stats.lr_no_cuts", threshold=threshold, runs=lc.runs, when=when))
    if arm.one_class_collapse:
        oc = arm.one_class_collapse
        lines.append(S("stats.one_class", ending=S.count("runs", oc.runs_ending_collapsed),
                       ever=oc.runs_ever_collapsed))
    for rule in arm.optimism.rules if arm.optimism else []:
        if finite(rule.low):
            ci = S("stats.optimism_ci", low=pts(rule.low), high=pts(rule.high))
        else:
            ci = S("stats.no_ci_same", runs=rule.n_runs) if rule.n_runs >= 2 and rule.sd == 0 else S["stats.no_ci"]
        lines.append(S("stats.optimism", rule=rule.rule, mean=pts(rule.mean), ci=ci))
    if arm.val_size_for_halfwidth:
        sizes = S["stats.comma"].join(S("stats.halfwidth_size", h=pct(float(h), 0), n=n) for h, n in arm.val_size_for_halfwidth.items())
        prob = arm.val_size_for_halfwidth_probability
        lines.append(S("stats.halfwidth", sizes=sizes, prob=S("stats.halfwidth_prob", p=f"{prob:g}") if prob else ""))
    return lines


def _metric(label: str, m: Interval | None, S: Strings) -> str:
    if not m:
        return S("stats.metric_missing", label=label)
    scope = S["stats.scope_these" if m.scope == "these validation images" else "stats.scope_new"]
    parts = [S("stats.ci", low=pct(m.low), high=pct(m.high), scope=scope) if finite(m.low)
             else S["stats.no_ci"]]
    if finite(m.sd):
        parts.append(S("stats.sd", sd=pts(m.sd)))
    if finite(m.pi_low):
        parts.append(S("stats.one_run", low=pct(m.pi_low), high=pct(m.pi_high)))
    if m.method == "collapse-mixture":
        parts.append(S("stats.collapse", share=pct(m.collapse_high, 0), collapsed=m.collapsed, runs=m.n))
        if m.note:
            parts.append(S["stats.collapse_few_seeds" if m.units == "seed" else "stats.collapse_few"])
    conditional = m.conditional
    if conditional and m.scope == "new validation images" and finite(conditional.low):
        parts.append(S("stats.conditional", low=pct(conditional.low), high=pct(conditional.high)))
    design = S["stats.comma"] + S[DESIGN_KEYS[m.design]] if m.design in DESIGN_KEYS else ""
    return S("stats.metric", label=label, mean=pct(m.estimate), parts=S["stats.sep"].join(parts), n=m.n,
             design=design)


def _variance_lines(arm: ArmSummary, S: Strings) -> list:
    """The variance shares (split, seed, residual) and the validation draw's part of them. Where
    every run had its own seed and split the ANOVA leaves one residual, and the draw's line then
    says that it splits that residual (validation images vs the model)."""
    lines = []
    rows = {r.component: r for r in arm.variance_components or []}
    confounded = bool(rows) and all(c in rows and not finite(rows[c].variance) for c in ("split", "seed"))
    if confounded:
        lines.append(S["stats.variance_confounded"])
    elif rows:
        parts = [f"{S[f'tables.comp_{c}']} {_or_missing(pct(rows[c].share, 0), S)}"
                 for c in ("split", "seed", "residual") if c in rows]
        method = arm.variance_components[0].method
        lines.append(S("stats.variance", parts=S["stats.comma"].join(parts),
                       method=S.section("stats").get(f"method_{method.replace('-', '_')}", method)))
    fs = arm.finite_sample
    if fs and fs.method == "jordan-independent-errors":
        lines.append(S("stats.finite_jordan", share=pct(fs.finite_sample_share, 0)))
    elif fs:
        how = S["stats.draw_stratified" if fs.method == "stratified-per-run" else "stats.draw_binomial"]
        key = "stats.finite_draw_residual" if confounded else "stats.finite_draw"
        lines.append(S(key, n=fs.n, how=how, sd=pts(math.sqrt(max(fs.sampling_variance, 0.0))),
                       share=pct(fs.finite_sample_share, 0)))
    return lines


def _comparison_line(comp, S: Strings, val_sizes: dict) -> str:
    poi, t = comp.probability_of_improvement, comp.corrected_t
    poi_text = (S["stats.missing"] if not poi
                else S("stats.poi", estimate=num(poi.estimate), low=num(poi.low), high=num(poi.high)))
    sizes = unequal_val_sizes(comp, val_sizes)
    if poi and sizes:
        poi_text += S("stats.poi_sizes", n_a=sizes[0], n_b=sizes[1])
    if not t:
        t_text = S["stats.missing"]
    elif t.t is not None:
        t_text = S("stats.t", t=num(t.t), p=f"{t.p_value:.3g}")
    else:
        t_text = S("stats.t_p", p=f"{t.p_value:.3g}")
    t_name = S["stats.t_name_crossed" if t and t.method == "crossed" else "stats.t_name_corrected"]
    return S("stats.compare", a=comp.a, b=comp.b, pairs=comp.pairs, sig=comp.mcnemar_significant,
             m=len(comp.mcnemar), poi=poi_text, t_name=t_name, t=t_text)


def _spread_line(comp, S: Strings) -> str:
    """The paired change in run-to-run spread (Comparison.spread_change), one line."""
    change = comp.spread_change
    collapsed, sd, m = change.collapsed, change.sd, change.learned_pairs
    collapsed_text = S["stats.spread_unknown"] if not collapsed else S(
        "stats.spread_collapsed", ca=collapsed.a, cb=collapsed.b, pairs=change.pairs,
        diff=pts(collapsed.difference, signed=True), low=pts(collapsed.low, signed=True),
        high=pts(collapsed.high, signed=True))
    which = S["stats.spread_learned" if collapsed else "stats.spread_all"]
    if sd:
        sd_text = S("stats.spread_sd", m=m, which=which, sd_a=pts(sd.sd_a), sd_b=pts(sd.sd_b),
                    ratio=num(sd.sd_ratio), low=num(sd.sd_low), high=ratio_end(sd.sd_high))
    elif change.sd_missing == "constant":
        sd_text = S("stats.spread_constant", m=m, which=which)
    else:
        sd_text = S("stats.spread_few", m=m, which=which, min=MIN_SPREAD_PAIRS)
    return S("stats.spread", a=comp.a, b=comp.b, collapsed=collapsed_text, sd=sd_text)
