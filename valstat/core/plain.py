"""JSON-ready plain Python from numpy/pandas values: the one converter every result uses."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

#: Field metadata key: leave the field out of the plain dict while its value is None.
OMIT_IF_NONE = "omit_if_none"


def to_plain(value):
    """Recursively convert numpy/pandas values (DataFrames as records, dataclasses as dicts)
    to JSON-ready Python. NaN, inf and pd.NA become None; numpy scalars int/float/bool;
    unknown objects str. A dataclass field whose metadata sets OMIT_IF_NONE is left out while
    None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (f.metadata.get(OMIT_IF_NONE) and getattr(value, f.name) is None)}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, pd.DataFrame):
        return [to_plain(r) for r in value.to_dict(orient="records")]
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return [to_plain(v) for v in list(value)]
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value if isinstance(value, str) else str(value)
