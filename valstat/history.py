"""Read a Keras training history for `valstat diagnose`.

Three inputs are understood; files are told apart by their content (not their extension):

* a ``keras.callbacks.CSVLogger`` file: a header line, then one row per epoch with an ``epoch``
  column (Keras counts epochs from 0);
* a JSON dump of ``History.history``: an object mapping metric names to equally long lists, one
  value per epoch (epochs are numbered from 0 in list order).  ``{"history": {...}}`` (the object
  wrapped once more, as some scripts save it together with ``params``) is accepted too;
* TensorBoard event files written by ``keras.callbacks.TensorBoard``: the run's log folder, its
  ``validation/`` folder or one ``*tfevents*`` file (see :mod:`valstat.tbevents`).

The result is a tidy epochs table (the ``epochs`` contract of the store, without ``run_id``):
``epoch`` (int, from 0) and ``val_accuracy`` always, and ``loss``, ``accuracy``, ``val_loss``,
``learning_rate`` where the history has them.  Older spellings are renamed: ``lr`` (tf.keras 2)
to ``learning_rate``; ``acc``/``val_acc`` (Keras < 2.3) and ``categorical_accuracy`` /
``sparse_categorical_accuracy`` / ``binary_accuracy`` (and their ``val_`` forms) to ``accuracy`` /
``val_accuracy``.  Other metrics are dropped.

Every problem with the file raises :class:`valstat.errors.ValstatError` with one line naming the file
and the problem; no pandas or json traceback escapes.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from valstat.errors import ValstatError
from valstat.tbevents import is_event_source, read_event_columns

#: Output columns, in order; ``epoch`` and ``val_accuracy`` are always present.
COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")

#: Accepted spellings for each output column, canonical name first.
ALIASES = {
    "epoch": ("epoch",),
    "loss": ("loss",),
    "val_loss": ("val_loss",),
    "accuracy": ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy",
                 "binary_accuracy"),
    "val_accuracy": ("val_accuracy", "val_acc", "val_categorical_accuracy",
                     "val_sparse_categorical_accuracy", "val_binary_accuracy"),
    "learning_rate": ("learning_rate", "lr"),
}

# Columns that must lie in [0, 1]; columns that may hold NaN/inf (a diverged run logs loss=nan).
_FRACTIONS = ("accuracy", "val_accuracy")
_MAY_BE_NONFINITE = ("loss", "val_loss")
_DELIMITERS = (",", ";", "\t")
_KNOWN = {spelling for spellings in ALIASES.values() for spelling in spellings}


def read_history(path) -> pd.DataFrame:
    """Read a CSVLogger CSV or a ``History.history`` JSON file into a tidy epochs DataFrame.

    Parameters
    ----------
    path : str or os.PathLike
        The history file.

    Returns
    -------
    pandas.DataFrame
        One row per epoch, sorted by epoch: ``epoch`` (int64), ``val_accuracy`` (float64) and,
        where present, ``loss``, ``accuracy``, ``val_loss``, ``learning_rate`` (float64), in the
        order of :data:`COLUMNS`.

    Raises
    ------
    ValstatError
        Missing file, a directory, an empty or unreadable file, no validation-accuracy column,
        non-numeric values, NaN/inf in an accuracy or learning-rate column, JSON lists of unequal
        length, accuracies outside [0, 1], a negative learning rate, or duplicate epochs.
    """
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise ValstatError(f"history file {name} does not exist")
    if is_event_source(path):
        columns, found = read_event_columns(path)
        return _tidy(columns, name, "TensorBoard", found)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ValstatError(f"cannot read history file {name}: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValstatError(f"{name} is not a text file (not UTF-8); give a CSVLogger CSV "
                        "or a History JSON") from None
    if not text.strip():
        raise ValstatError(f"history file {name} is empty")

    if text.lstrip()[:1] in ("{", "["):
        columns, found = _columns_from_json(text, name)
        kind = "JSON"
    else:
        columns, found = _columns_from_csv(text, name)
        kind = "CSV"
    return _tidy(columns, name, kind, found)


def validate_epochs(epochs: pd.DataFrame, name: str = "epochs table") -> pd.DataFrame:
    """Check an epochs DataFrame built elsewhere by the same rules as :func:`read_history`.

    Returns a tidy copy (known columns only, sorted by epoch); raises ValstatError on any problem.
    """
    if not isinstance(epochs, pd.DataFrame):
        raise ValstatError(f"{name} must be a pandas DataFrame, got {type(epochs).__name__}")
    columns = {}
    for column in epochs.columns:
        try:
            columns[str(column)] = np.asarray(epochs[column], dtype=float)
        except (TypeError, ValueError):
            if str(column) in _KNOWN:
                raise ValstatError(f"{name}: column '{column}' holds non-numeric values") from None
            # columns valstat does not use (run_id, notes, ...) may hold anything
    return _tidy(columns, name, "table")


# --------------------------------------------------------------------------------------------
# JSON


def _columns_from_json(text: str, name: str) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValstatError(f"{name} looks like JSON but is not valid JSON: {error.msg} "
                        f"(line {error.lineno}, column {error.colno})") from None
    except RecursionError:
        raise ValstatError(f"{name} is JSON nested too deeply to be a Keras history") from None
    if isinstance(data, dict) and isinstance(data.get("history"), dict):
        data = data["history"]
    if not isinstance(data, dict):
        raise ValstatError(f"{name} holds a JSON {type(data).__name__}, not an object; expected "
                        "History.history saved with json.dump (metric name -> list of values)")
    if not data:
        raise ValstatError(f"{name} is an empty JSON object: no metrics, no epochs")
    used = {key: values for key, values in data.items() if key in _KNOWN}
    if not used:
        return {}, [str(key) for key in data]
    lengths = {}
    for key, values in used.items():
        if not isinstance(values, list):
            raise ValstatError(f"{name}: metric '{key}' is a JSON {type(values).__name__}, "
                            "not a list of per-epoch values")
        lengths[key] = len(values)
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise ValstatError(f"{name}: the metric lists have unequal lengths ({detail}); "
                        "every metric needs one value per epoch")
    columns = {}
    for key, values in used.items():
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValstatError(f"{name}: non-numeric value {_show(value)} in '{key}' "
                                f"at position {i} (epoch {i})")
        columns[key] = [float(v) for v in values]
    if "epoch" not in columns:
        columns["epoch"] = list(range(lengths[next(iter(lengths))]))
    return columns, [str(key) for key in data]


# --------------------------------------------------------------------------------------------
# CSV


def _columns_from_csv(text: str, name: str) -> dict:
    header_line = next(line for line in text.splitlines() if line.strip())
    delimiter = next((d for d in _DELIMITERS if d in header_line), ",")
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as error:
        raise ValstatError(f"{name} is not a readable CSV file: {error}") from None
    numbered = [(i + 1, row) for i, row in enumerate(rows) if any(cell.strip() for cell in row)]
    (_, header), body = numbered[0], numbered[1:]
    header = [cell.strip() for cell in header]
    if len(header) == 1 and not _is_name(header[0]):
        raise ValstatError(f"{name} has no header line naming the columns "
                        "(expected e.g. 'epoch,accuracy,loss,val_accuracy,val_loss')")
    if header[0] == "" and "epoch" not in header:
        header[0] = "epoch"  # pandas' DataFrame(history.history).to_csv() writes an unnamed index
    blanks = [i for i, cell in enumerate(header) if cell == ""]
    if blanks:
        raise ValstatError(f"{name}: column {blanks[0] + 1} of the header line has no name")
    seen = set()
    for cell in header:
        if cell in seen:
            raise ValstatError(f"{name}: column '{cell}' appears twice in the header line")
        seen.add(cell)
    if not body:
        raise ValstatError(f"{name} has a header line but no epochs")

    columns = {cell: [] for cell in header if cell in _KNOWN}
    for lineno, row in body:
        cells = [cell.strip() for cell in row]
        if cells == header:
            raise ValstatError(f"{name}: the header line repeats at line {lineno}, so the file holds "
                            "more than one log (CSVLogger(append=True) over several fits?); "
                            "keep one training run per file")
        if len(cells) != len(header):
            raise ValstatError(f"{name}: line {lineno} has {len(cells)} fields but the header has "
                            f"{len(header)}")
        for column, cell in zip(header, cells):
            if column not in columns:
                continue  # a metric valstat does not use may hold anything
            if cell == "":
                raise ValstatError(f"{name}: empty value in column '{column}' at line {lineno}")
            if cell == "NA":  # CSVLogger's mark for a metric missing that epoch
                if column in ALIASES["val_accuracy"]:
                    raise ValstatError(
                        f"{name}: '{column}' is NA at line {lineno}: Keras writes NA on epochs "
                        "without validation (validation_freq > 1); diagnose needs a validation "
                        "score every epoch")
                columns[column].append(math.nan)
                continue
            try:
                value = float(cell)
            except ValueError:
                raise ValstatError(f"{name}: non-numeric value {_show(cell)} in column '{column}' "
                                f"at line {lineno}") from None
            columns[column].append(value)
    if "epoch" not in columns:
        columns["epoch"] = [float(i) for i in range(len(body))]
    return columns, header


def _is_name(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return cell != ""
    return False


# --------------------------------------------------------------------------------------------
# shared


def _tidy(columns: dict, name: str, kind: str, found=None) -> pd.DataFrame:
    """Map aliases to canonical names, validate values, return the tidy DataFrame.

    `found`: every column/metric name in the source, for the message when none is usable.
    """
    chosen = {}
    for canonical, spellings in ALIASES.items():
        present = [s for s in spellings if s in columns]
        if not present:
            continue
        first = present[0]
        for other in present[1:]:
            a = np.asarray(columns[first], dtype=float)
            b = np.asarray(columns[other], dtype=float)
            if not np.allclose(a, b, rtol=1e-6, atol=0.0, equal_nan=True):
                raise ValstatError(f"{name} has both '{first}' and '{other}' with different values; "
                                f"keep one of them as '{canonical}'")
        chosen[canonical] = columns[first]

    if "val_accuracy" not in chosen:
        names = columns if found is None else found
        found = ", ".join(sorted(str(c) for c in names if c != "epoch")) or "none"
        raise ValstatError(f"{name} has no validation-accuracy column (val_accuracy); metrics found: "
                        f"{found}. Train with metrics=['accuracy'] and validation data "
                        "(validation_data=... or validation_split=...)")

    frame = pd.DataFrame({c: np.asarray(chosen[c], dtype=float) for c in COLUMNS if c in chosen})
    if frame.empty:
        raise ValstatError(f"{name} has no epochs")

    epoch = frame["epoch"].to_numpy()
    bad = ~np.isfinite(epoch) | (epoch < 0) | (epoch != np.round(epoch))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValstatError(f"{name}: epoch {_show(epoch[i])} (row {i + 1}) is not a whole number "
                        ">= 0")
    frame["epoch"] = epoch.astype(np.int64)
    duplicated = frame["epoch"][frame["epoch"].duplicated()]
    if not duplicated.empty:
        raise ValstatError(f"{name}: epoch {int(duplicated.iloc[0])} appears more than once; a "
                        "history must hold one training run (was the log appended to?)")

    for column in frame.columns.drop("epoch"):
        values = frame[column].to_numpy()
        if column not in _MAY_BE_NONFINITE:
            bad = ~np.isfinite(values)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValstatError(f"{name}: '{column}' is {_show(values[i])} at epoch "
                                f"{int(frame['epoch'].iloc[i])}; it must be a finite number")
        if column in _FRACTIONS:
            bad = (values < 0) | (values > 1)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                hint = (" (these look like percentages: divide by 100)"
                        if values.max() <= 100 and values.min() >= 0 else "")
                raise ValstatError(f"{name}: '{column}' is {values[i]:g} at epoch "
                                f"{int(frame['epoch'].iloc[i])}, outside [0, 1]; accuracies "
                                f"must be fractions{hint}")
        if column == "learning_rate":
            bad = values < 0
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValstatError(f"{name}: learning rate {values[i]:g} at epoch "
                                f"{int(frame['epoch'].iloc[i])} is negative")

    frame = frame.sort_values("epoch", kind="stable").reset_index(drop=True)
    frame.attrs["source"] = name
    frame.attrs["format"] = kind
    return frame


def _show(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:g}"
    text = repr(value) if isinstance(value, str) else json.dumps(value)[:40]
    return text[:40]
