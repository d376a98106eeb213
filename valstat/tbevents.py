"""Read the per-epoch scalars of a Keras `TensorBoard` callback's event files, without TensorFlow.

Event files are TFRecord files (length, CRC, payload, CRC) of `Event` protocol buffers; the
message classes come from the `tensorboard` package (the [tensorboard] extra), which does not
import TensorFlow. Keras writes `epoch_accuracy`, `epoch_loss` (and `epoch_learning_rate`) with the
epoch as the step, into `validation/` for validation metrics and `train/` for training ones.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from valstat.errors import ValstatError

# TensorBoard tag -> history column, for the validation and the train folder
VALIDATION_TAGS = {"epoch_accuracy": "val_accuracy", "epoch_loss": "val_loss",
                   "epoch_learning_rate": "learning_rate"}
TRAIN_TAGS = {"epoch_accuracy": "accuracy", "epoch_loss": "loss",
              "epoch_learning_rate": "learning_rate"}
_DTYPES = {1: np.float32, 2: np.float64}    # TensorProto dtype codes DT_FLOAT, DT_DOUBLE


def is_event_source(path: Path) -> bool:
    """A folder (TensorBoard log folder) or a file named like an event file."""
    return path.is_dir() or "tfevents" in path.name


def _event_class():
    try:
        from tensorboard.compat.proto.event_pb2 import Event
    except ImportError:
        raise ValstatError("reading TensorBoard event files needs the tensorboard package: "
                        "pip install \"valstat[tensorboard]\"") from None
    return Event


def _records(path: Path):
    """Payloads of the TFRecord file at `path`; a truncated last record (a writer still
    running) is ignored."""
    data = path.read_bytes()
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        end = offset + 12 + length
        if end + 4 > len(data):
            return
        yield data[offset + 12:end]
        offset = end + 4


def _scalar(value) -> float | None:
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind != "tensor":
        return None
    tensor = value.tensor
    if tensor.tensor_content and tensor.dtype in _DTYPES:
        return float(np.frombuffer(tensor.tensor_content, dtype=_DTYPES[tensor.dtype])[0])
    for values in (tensor.float_val, tensor.double_val):
        if len(values):
            return float(values[0])
    return None


def read_scalars(files: list[Path]) -> dict:
    """tag -> {step: value} over `files` (later events win)."""
    event_class = _event_class()
    scalars: dict = {}
    for path in sorted(files):
        try:
            records = 0
            for records, payload in enumerate(_records(path), start=1):
                event = event_class()
                event.ParseFromString(payload)
                for value in event.summary.value:
                    number = _scalar(value)
                    if number is not None:
                        scalars.setdefault(value.tag, {})[int(event.step)] = number
        except OSError as error:
            raise ValstatError(f"cannot read {path}: {error.strerror or error}") from None
        except Exception as error:  # noqa: BLE001 - protobuf's DecodeError and friends
            raise ValstatError(f"{path} is not a readable TensorBoard event file "
                            f"({type(error).__name__})") from None
        if not records:     # every event file starts with a record of its version
            raise ValstatError(f"{path} is not a readable TensorBoard event file (no records)")
    return scalars


def _event_files(folder: Path) -> list[Path]:
    return [p for p in folder.glob("*tfevents*") if p.is_file()]


def read_event_columns(path: Path) -> tuple[dict, list]:
    """History columns from a TensorBoard log: a run folder (holding validation/ and train/),
    a validation/ folder (train/ beside it is read too), or one event file.

    Returns (columns, names found) in the form history._tidy takes: lists per column, one value
    per validation epoch.
    """
    if path.is_dir() and (path / "validation").is_dir():
        validation, train = path / "validation", path / "train"
    elif path.is_dir():
        validation, train = path, path.parent / "train"
    else:
        validation, train = None, None
    files = _event_files(validation) if validation else [path]
    if not files:
        raise ValstatError(f"{path} holds no TensorBoard event files (*tfevents*)")
    val = read_scalars(files)
    train_scalars = read_scalars(_event_files(train)) if train and train.is_dir() \
        and train != validation else {}
    found = sorted(set(val) | {f"train/{tag}" for tag in train_scalars})
    if "epoch_accuracy" not in val:
        return {}, found
    steps = sorted(val["epoch_accuracy"])
    columns = {"epoch": [float(step) for step in steps]}
    for scalars, tags in ((train_scalars, TRAIN_TAGS), (val, VALIDATION_TAGS)):
        for tag, column in tags.items():
            series = scalars.get(tag, {})
            if all(step in series for step in steps):
                columns[column] = [series[step] for step in steps]
    return columns, found
