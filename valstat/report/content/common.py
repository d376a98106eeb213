"""What the report's content modules share: the Table type, an arm's summary, its schedule.

Numbers come from the Analysis (summary + stats); words from the language's TOML file.
Everything returned is plain text: escaping is the writers' job (HTML autoescape, latex.escape).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from valstat.report.analysis import Analysis
from valstat.results import ArmSummary


#: Coverage table of valstat's intervals, written by benchmarks/calibration.py.
CALIBRATION = Path(__file__).resolve().parent.parent / "calibration.json"


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


def _component_name(S, component):
    return S[f"tables.comp_{component}"] if f"comp_{component}" in S["tables"] else component


def _n_truth(analysis):
    dataset = analysis.meta.get("dataset") or {}
    if dataset.get("n_truth"):
        return int(dataset["n_truth"])
    values = pd.to_numeric(analysis.runs.get("n_truth"), errors="coerce").dropna()
    return int(values.max()) if len(values) and values.max() > 0 else None
