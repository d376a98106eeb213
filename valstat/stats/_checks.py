"""Input checks shared by the stats modules: each raises ValstatError with one clear message."""

from __future__ import annotations

import math

import numpy as np

from valstat.errors import ValstatError


def as_number(value, message: str) -> float:
    """float(value), or a ValstatError with `message` when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValstatError(message) from None


def check_level(level: float, name: str = "level") -> float:
    """Return `level` as float after checking it lies strictly inside (0, 1)."""
    value = as_number(level, f"{name} must be a number in (0, 1), got {level!r}")
    if not 0.0 < value < 1.0:
        raise ValstatError(f"{name} must be in (0, 1), got {level!r}")
    return value


def check_positive_int(value, name: str) -> int:
    """Return `value` as int after checking it is a whole number >= 1."""
    number = as_number(value, f"{name} must be a positive whole number, got {value!r}")
    if not math.isfinite(number) or number < 1 or number != int(number):
        raise ValstatError(f"{name} must be a positive whole number, got {value!r}")
    return int(number)


def as_1d(values, name: str, min_len: int = 1, allow_nan: bool = False) -> np.ndarray:
    """Return `values` as a 1-D float array of at least `min_len` finite entries."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValstatError(f"{name} must be numbers") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValstatError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size < min_len:
        raise ValstatError(f"{name} needs at least {min_len} value(s), got {arr.size}")
    if not allow_nan and not np.all(np.isfinite(arr)):
        raise ValstatError(f"{name} contains NaN or infinite values")
    return arr


def _to_bool(arr: np.ndarray, name: str) -> np.ndarray:
    """arr as booleans; ValstatError unless it already is boolean or holds only 0 and 1."""
    if arr.dtype == bool:
        return arr
    if not np.all(np.isin(arr, (0, 1))):
        raise ValstatError(f"{name} must hold booleans (True/False or 1/0)")
    return arr.astype(bool)


def as_bool_matrix(values, name: str, min_rows: int = 1, min_cols: int = 1) -> np.ndarray:
    """Return a 2-D boolean array (rows x columns), checking that entries are 0/1 or bool."""
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise ValstatError(f"{name} must be a 2-D matrix, got shape {arr.shape}")
    if arr.shape[0] < min_rows or arr.shape[1] < min_cols:
        raise ValstatError(
            f"{name} needs at least {min_rows} row(s) and {min_cols} column(s), got shape {arr.shape}"
        )
    return _to_bool(arr, name)


def as_paired_bool(a, b, names=("a", "b")) -> tuple[np.ndarray, np.ndarray]:
    """Return two equally long 1-D boolean arrays."""
    arrays = []
    for values, name in zip((a, b), names):
        arr = np.asarray(values)
        if arr.ndim != 1 or arr.size == 0:
            raise ValstatError(f"{name} must be a non-empty 1-D array of booleans")
        arrays.append(_to_bool(arr, name))
    if arrays[0].size != arrays[1].size:
        raise ValstatError(
            f"{names[0]} and {names[1]} must be the same length, got {arrays[0].size} and {arrays[1].size}"
        )
    return arrays[0], arrays[1]


def check_choice(value: str, choices, name: str) -> str:
    """Return `value` if it is one of `choices`, else raise a ValstatError naming them."""
    if value not in choices:
        raise ValstatError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")
    return value


def need_columns(frame, columns, name: str) -> None:
    """Raise a ValstatError if DataFrame `frame` lacks any of `columns`."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValstatError(f"{name} is missing column(s): {', '.join(missing)}")
