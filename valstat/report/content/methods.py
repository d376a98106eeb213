"""The report's methods paragraph (with citations) for the thesis kit.

Numbers come from the Analysis (summary + stats); words from the language's TOML file.
Everything returned is plain text: escaping is the writers' job (HTML autoescape, latex.escape).
"""

from __future__ import annotations

import json

from valstat import __version__
from valstat.core.design import images_scored
from valstat.stats.intervals import COLLAPSE_AWARE_BELOW
from valstat.stats.variance import COMPONENTS
from valstat.report.analysis import Analysis, confounded, finite_sample_methods
from valstat.report.text import Strings
from valstat.report.content.common import CALIBRATION, _arm_info, _component_name, _n_truth
from valstat.report.content.setup import trained_sentences


def methods(analysis: Analysis, S: Strings) -> str:
    """The methods paragraph, plain text with [@key] citations."""
    c = analysis.coverage
    sizes = sorted({n for n in analysis.val_sizes.values() if n})
    parts = [S("methods.runs", runs=c["runs"], arms=c["arms"], seeds=c["seeds"],
               folds=c["folds"], n=", ".join(map(str, sizes)) or "?"),
             *trained_sentences(analysis, S), S["methods.binomial"], S["methods.moves"]]
    moves = [_arm_info(analysis, a).moves_within_noise for a in analysis.arms]
    tests = {m.test or "" for m in moves if m}
    if any("fisher" in t for t in tests):
        parts.append(S["methods.moves_fisher"])
    parts += _means(analysis, S)
    parts += [_variance_sentence(method, factor, S)
              for method, factor in dict.fromkeys(_decompositions(analysis))]
    methods_used = finite_sample_methods(analysis)
    if "jordan-independent-errors" in methods_used:
        parts.append(S["methods.variance_jordan"])
    for method in ("stratified", "binomial"):
        if f"{method}-per-run" in methods_used:
            parts.append(S[f"methods.variance_{method}"])
    if any(confounded(analysis, a) for a in analysis.arms):
        parts.append(S["methods.variance_confounded"])
    parts.append(S["methods.schedule"])
    spread = len(analysis.arms) > 1 and any(c.spread_change for c in analysis.summary.comparisons)
    if len(analysis.arms) > 1:
        parts.append(S["methods.compare"])
        if any(c.corrected_t and c.corrected_t.method == "crossed" for c in analysis.summary.comparisons):
            parts.append(S["methods.compare_crossed"])
    if spread:
        parts.append(S["methods.compare_spread"])
    if len(analysis.selection):
        parts.append(S("methods.selection", n_truth=_n_truth(analysis) or "?"))
    parts.append(S["methods.sizes"])
    calibration = json.loads(CALIBRATION.read_text(encoding="utf-8"))
    coverage = {key: f"{value:.2f}" for key, value in calibration["coverage"].items()}
    parts.append(S("methods.coverage", reps=calibration["reps"], **coverage))
    if spread and {"spread_ratio", "collapsed_share"} <= set(coverage):
        parts.append(S("methods.coverage_spread", **coverage))
    parts.append(S("methods.software", version=__version__))
    return " ".join(parts)


def _means(analysis: Analysis, S: Strings) -> list:
    """How the intervals of the mean were made, for the designs the arms have (summary intervals)."""
    finals = [_arm_info(analysis, a).final_val_accuracy for a in analysis.arms]
    finals = [f for f in finals if f]
    parts = [S["methods.means"]]
    if images_scored(analysis.runs) is not None:
        parts.append(S["methods.means_effective"])
    if any(f.shared_variance for f in finals):
        parts.append(S["methods.means_pool"])
    if any(f.units == "seed" for f in finals):
        parts.append(S["methods.means_units"])
    if any(f.method == "collapse-mixture" for f in finals):
        parts.append(S("methods.means_collapse", below=COLLAPSE_AWARE_BELOW))
    if any(f.method == "collapse-mixture" and f.conditional for f in finals):
        parts.append(S["methods.means_collapse_shared"])
    if any(f.method == "crossed-anova" for f in finals):
        parts.append(S["methods.means_crossed"])
    if any(f.design != "own split per run" and f.scope == "these validation images"
           for f in finals):
        parts.append(S["methods.means_these_images"])
    return parts


def _decompositions(analysis: Analysis):
    """(method, factor) of each arm whose variance was split into parts: the crossed or REML
    split/seed/residual decomposition (factor None), or one-way ANOVA of one factor against
    the residual. Arms where nothing could be separated (seed and split confounded, one
    component holding everything) yield nothing."""
    frame = analysis.variance
    for arm in analysis.arms:
        rows = frame[(frame["arm"] == arm) & frame["component"].isin(COMPONENTS)]
        estimated = set(rows.loc[rows["variance"].notna(), "component"])
        if rows.empty or len(estimated) < 2:
            continue
        method = rows["method"].iloc[0]
        if method in ("anova-crossed", "mixedlm-reml"):
            yield method, None
        elif "residual" in estimated:
            yield method, (estimated - {"residual"}).pop()


def _variance_sentence(method: str, factor, S: Strings) -> str:
    if factor is None:
        return S["methods.variance_crossed" if method == "anova-crossed" else "methods.variance_mixedlm"]
    return S("methods.variance_one_way", factor=_component_name(S, factor))
