"""The report's tables: per arm, comparisons, variance components, optimism (with tidy CSV frames).

Numbers come from the Analysis (summary + stats); words from the language's TOML file.
Everything returned is plain text: escaping is the writers' job (HTML autoescape, latex.escape).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from valstat.report.analysis import Analysis
from valstat.report.text import Strings, epoch, finite, num, pct, pts, pval
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
        collapse = info.lr_collapse
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
            str(collapse.runs) if collapse else "–", epoch(collapse.median_epoch if collapse else None),
            str(one.get("runs_ending_collapsed", "–"))])
        raw.append({"arm": arm, "runs": info.n_runs, "diverged": info.n_diverged,
                    "val_size": info.val_size,
                    "final_mean": final.get("estimate"), "final_low": final.get("low"),
                    "final_high": final.get("high"), "final_sd": final.get("sd"),
                    "final_pi_low": final.get("pi_low"), "final_pi_high": final.get("pi_high"),
                    "best_mean": best.get("estimate"), "best_low": best.get("low"),
                    "best_high": best.get("high"),
                    "moves": moves.get("moves"), "moves_within_noise": moves.get("within_noise"),
                    "lr_collapsed_runs": collapse.runs if collapse else None,
                    "lr_collapse_median_epoch": collapse.median_epoch if collapse else None,
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
