"""The report's tables: per arm, comparisons, variance components, optimism (with tidy CSV frames).

Numbers come from the Analysis (summary + stats); words from the language's TOML file.
Everything returned is plain text: escaping is the writers' job (HTML autoescape, latex.escape).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from valstat.report.analysis import Analysis
from valstat.report.text import Strings, dof, epoch, finite, num, pct, pts, pval
from valstat.report.content.common import Table, _arm_info, _component_name


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


def _ci(interval, prediction=False):
    """'low – high' in percent of an Interval's CI (or its prediction interval), or '–'."""
    if interval is None:
        return "–"
    low, high = (interval.pi_low, interval.pi_high) if prediction else (interval.low, interval.high)
    return f"{pct(low)} – {pct(high)}" if finite(low) else "–"


def _value(result, name):
    """result.name, or None when the result is missing (e.g. an arm without runs)."""
    return None if result is None else getattr(result, name)


def _arms_table(analysis, S):
    """Per-arm summary, displayed with one column per arm (rows = quantities); tidy CSV."""
    T = S.section("tables")
    labels = [T["runs"], T["n"], T["final_mean"], T["final_ci"], T["final_sd"], T["final_pi"],
              T["best_mean"], T["best_ci"], T["within"], T["lr_collapsed"], T["lr_epoch"],
              T["one_class"]]
    columns_by_arm, raw = [], []
    for arm in analysis.arms:
        info = _arm_info(analysis, arm)
        final, best = info.final_val_accuracy, info.best_val_accuracy
        moves = info.moves_within_noise
        collapse = info.lr_collapse
        one = info.one_class_collapse
        runs_text = str(info.n_runs)
        if info.n_diverged:
            runs_text += f" ({info.n_diverged} {T['diverged'].lower()})"
        columns_by_arm.append([
            runs_text, str(info.val_size or "–"), pct(_value(final, "estimate")),
            _ci(final), pts(_value(final, "sd")), _ci(final, prediction=True),
            pct(_value(best, "estimate")), _ci(best),
            f"{moves.within_noise}/{moves.moves}" if moves and moves.moves else "–",
            str(collapse.runs) if collapse else "–", epoch(collapse.median_epoch if collapse else None),
            str(one.runs_ending_collapsed) if one else "–"])
        raw.append({"arm": arm, "runs": info.n_runs, "diverged": info.n_diverged,
                    "val_size": info.val_size,
                    "final_mean": _value(final, "estimate"), "final_low": _value(final, "low"),
                    "final_high": _value(final, "high"), "final_sd": _value(final, "sd"),
                    "final_pi_low": _value(final, "pi_low"), "final_pi_high": _value(final, "pi_high"),
                    "best_mean": _value(best, "estimate"), "best_low": _value(best, "low"),
                    "best_high": _value(best, "high"),
                    "moves": _value(moves, "moves"), "moves_within_noise": _value(moves, "within_noise"),
                    "lr_collapsed_runs": collapse.runs if collapse else None,
                    "lr_collapse_median_epoch": collapse.median_epoch if collapse else None,
                    "one_class_runs": _value(one, "runs_ending_collapsed")})
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
        poi, t = c.probability_of_improvement, c.corrected_t
        rows.append([c.a, c.b, str(c.pairs), num(poi.estimate),
                     f"{num(poi.low)} – {num(poi.high)}",
                     num(_value(t, "t")), dof(t.df) if t else "–",
                     pval(t.p_value).replace("= ", "") if t else "–",
                     f"{c.mcnemar_significant}/{len(c.mcnemar)}"])
        raw.append({"a": c.a, "b": c.b, "pairs": c.pairs,
                    "p_a_beats_b": poi.estimate, "p_low": poi.low,
                    "p_high": poi.high, "t": _value(t, "t"), "df": _value(t, "df"),
                    "p_value": _value(t, "p_value"),
                    "mcnemar_significant": c.mcnemar_significant,
                    "mcnemar_pairs": len(c.mcnemar)})
    return Table("comparisons", S["tables.comparisons_caption"], columns, rows,
                 pd.DataFrame(raw), align="llrrrrrrr")


def _method_name(S, method) -> str:
    """The variance table's words for an estimation method id (the id itself if unknown)."""
    return S.section("variance_methods").get(str(method), str(method))


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
                     pct(r.share, 0) if finite(r.share) else "–", _method_name(S, r.method)])
    raw = frame.assign(sd_points=np.sqrt(frame["variance"].clip(lower=0)) * 100)
    return Table("variance", S["tables.variance_caption"], columns, rows, raw,
                 align="llrrrl")


def _optimism_table(analysis, S):
    T = S.section("tables")
    rows, raw = [], []
    for arm in analysis.arms:
        optimism = _arm_info(analysis, arm).optimism
        for r in optimism.rules if optimism else []:
            if not finite(r.mean):
                continue
            rows.append([arm, T.get(f"rule_{r.rule}", r.rule),
                         pts(r.mean, signed=True),
                         f"{pts(r.low, signed=True)} – {pts(r.high, signed=True)}",
                         pts(r.max, signed=True), str(r.n_runs)])
            raw.append({"arm": arm, **dataclasses.asdict(r)})
    if not rows:
        return None
    columns = [T["arm"], T["rule"], T["mean"], T["ci"], T["max"], T["runs"]]
    return Table("optimism", S["tables.optimism_caption"], columns, rows, pd.DataFrame(raw),
                 align="llrrrr")
