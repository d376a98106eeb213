"""The report's coverage line, setup table and arm differences.

Numbers come from the Analysis (summary + stats); words from the language's TOML file.
Everything returned is plain text: escaping is the writers' job (HTML autoescape, latex.escape).
"""

from __future__ import annotations

import pandas as pd

from valstat.report.analysis import Analysis
from valstat.report.text import Strings, rate


def coverage(analysis: Analysis, S: Strings) -> list:
    c = analysis.coverage
    lines = []
    if c["planned"] is None:
        lines.append(S("coverage.unknown", runs=S.count("runs", c["runs"])))
    elif c["complete"]:
        lines.append(S("coverage.complete", runs=c["runs"], arms=c["arms"],
                       seeds=c["planned_seeds"] or c["seeds"],
                       folds=c["planned_folds"] or c["folds"]))
    else:
        lines.append(S("coverage.partial", runs=c["runs"], planned=c["planned"]))
    if c["diverged"]:
        key = "coverage.diverged_counted" if analysis.settings.count_diverged else "coverage.diverged"
        lines.append(S(key, runs=S.count("runs", c["diverged"])))
    if c["missing_arms"]:
        lines.append(S("coverage.missing_arms", arms=", ".join(map(str, c["missing_arms"]))))
    return lines


def _first_arm(analysis: Analysis):
    """(data, training, schedule, model, model_summary) settings of the first arm (dicts)."""
    first = analysis.arms[0]
    config = (analysis.meta.get("arms_config") or {}).get(first) or {}
    return (config.get("data") or {}, config.get("training") or {}, config.get("schedule") or {},
            config.get("model") or {}, (analysis.meta.get("model_summary") or {}).get(first) or {})


def _input_text(data: dict, summary_model: dict) -> str:
    return "×".join(map(str, summary_model.get("input") or [data.get("image_size", "?")] * 2 + [3]))


def _filters_text(summary_model: dict, S: Strings) -> str:
    return ", ".join(map(str, summary_model.get("filters") or [])) or S["setup.unknown"]


def trained_sentences(analysis: Analysis, S: Strings) -> list:
    """The methods paragraph's account of what was trained: the first arm's network, data and
    optimisation, then how each other arm differed (arm_differences)."""
    data, training, schedule, model, summary_model = _first_arm(analysis)
    if not (training or summary_model):
        return []
    unknown = S["setup.unknown"]
    n_train = pd.to_numeric(analysis.runs.get("n_train"), errors="coerce").dropna()
    parts = [S("methods.trained", arm=analysis.arms[0], train=int(n_train.median()) if len(n_train) else "?",
               input=_input_text(data, summary_model),
               filters=_filters_text(summary_model, S),
               params=f"{int(summary_model['params']):,}" if summary_model.get("params") else unknown,
               bn=S["methods.trained_bn"] if model.get("batch_norm") else "",
               optimizer=training.get("optimizer", unknown), lr=rate(training.get("learning_rate")),
               batch=training.get("batch_size", "?"), epochs=training.get("epochs", "?"),
               schedule=_schedule_text(schedule, S) if schedule else unknown)]
    parts += [S("methods.trained_arm", arm=arm, first=analysis.arms[0], diffs=diffs)
              for arm, diffs in arm_differences(analysis, S)[1:]]
    return parts


def setup(analysis: Analysis, S: Strings) -> list:
    """(label, value) rows describing data, model, optimiser, schedule, seeds and versions."""
    meta = analysis.meta
    data, training, schedule, model, summary_model = _first_arm(analysis)
    dataset = meta.get("dataset") or {}
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
                     input=_input_text(data, summary_model),
                     filters=_filters_text(summary_model, S),
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
    vary = list(sweep.get("vary") or [])
    if not any("augment" in (arm or {}) for arm in (meta.get("arms_config") or {}).values()):
        vary = [kind for kind in vary if kind != "augment"]  # no arm augments: that seed changes nothing
    rows.append((S["setup.seeds"], S("setup.seeds_value",
                 seeds=analysis.coverage["planned_seeds"] or analysis.coverage["seeds"],
                 folds=sweep.get("folds", analysis.coverage["folds"]),
                 vary=", ".join(vary) or (S["page.none"] if "vary" in sweep else unknown))))
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
