"""valstat.history.read_history: CSVLogger CSV and History JSON in, tidy epochs table out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from valstat.errors import ValstatError
from valstat.history import COLUMNS, read_history, validate_epochs

DATA = Path(__file__).parent / "data" / "histories"


def _f32(x):
    """How Keras writes a float32 metric: widened to float64."""
    return float(np.float32(x))


# ---------------------------------------------------------------------------------------------
# good files


def test_tfkeras2_lr_column_becomes_learning_rate():
    frame = read_history(DATA / "tfkeras2_lr.csv")
    assert list(frame.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                                   "learning_rate"]
    assert frame["epoch"].tolist() == list(range(12))
    assert frame["epoch"].dtype == np.int64
    k = [20, 22, 24, 20, 21, 21, 21, 21, 21, 21, 21, 21]
    np.testing.assert_allclose(frame["val_accuracy"], [_f32(x / 30) for x in k], rtol=0, atol=0)
    rates = [1e-3] * 5 + [1e-4] * 2 + [1e-5] * 2 + [1e-6] * 2 + [1e-7]
    np.testing.assert_allclose(frame["learning_rate"], rates, rtol=1e-6)
    assert frame.attrs["format"] == "CSV"


def test_keras3_learning_rate_csv():
    frame = read_history(DATA / "keras3_learning_rate.csv")
    assert set(frame.columns) == set(COLUMNS)
    assert len(frame) == 15
    assert round(frame["val_accuracy"].iloc[6] * 30) == 14
    assert frame["learning_rate"].iloc[6] == pytest.approx(1e-3, rel=1e-6)
    assert frame["learning_rate"].iloc[7] == pytest.approx(1e-4, rel=1e-6)


def test_history_json_numbers_epochs_from_zero():
    frame = read_history(DATA / "history.json")
    raw = json.loads((DATA / "history.json").read_text())
    assert frame["epoch"].tolist() == list(range(len(raw["val_accuracy"])))
    assert frame["val_accuracy"].tolist() == raw["val_accuracy"]
    assert frame["val_loss"].tolist() == raw["val_loss"]
    assert "learning_rate" not in frame.columns
    assert frame.attrs["format"] == "JSON"


def test_old_keras_acc_and_val_acc():
    frame = read_history(DATA / "old_keras_acc.csv")
    assert {"accuracy", "val_accuracy"} <= set(frame.columns)
    assert "acc" not in frame.columns and "val_acc" not in frame.columns
    assert [round(v * 30) for v in frame["val_accuracy"]] == [9, 13, 17, 19, 19, 20, 18, 19]


def test_format_detected_by_content_not_extension(tmp_path):
    json_as_txt = tmp_path / "history.csv"  # JSON inside, .csv outside
    json_as_txt.write_text(json.dumps({"val_accuracy": [0.5, 0.6], "loss": [1.0, 0.9]}))
    frame = read_history(json_as_txt)
    assert frame.attrs["format"] == "JSON"
    assert frame["val_accuracy"].tolist() == [0.5, 0.6]

    csv_as_json = tmp_path / "log.json"
    csv_as_json.write_text("epoch,val_accuracy\n0,0.5\n1,0.6\n")
    frame = read_history(csv_as_json)
    assert frame.attrs["format"] == "CSV"
    assert frame["epoch"].tolist() == [0, 1]


def test_csv_epochs_are_kept_and_sorted(tmp_path):
    path = tmp_path / "resumed.csv"  # initial_epoch=5: Keras keeps counting
    path.write_text("epoch,val_accuracy\n6,0.5\n5,0.4\n7,0.6\n")
    frame = read_history(path)
    assert frame["epoch"].tolist() == [5, 6, 7]
    assert frame["val_accuracy"].tolist() == [0.4, 0.5, 0.6]


def test_wrapped_history_json_and_bom_and_semicolons(tmp_path):
    wrapped = tmp_path / "w.json"
    wrapped.write_text(json.dumps({"history": {"val_accuracy": [0.1, 0.2]},
                                   "params": {"epochs": 2}}))
    assert read_history(wrapped)["val_accuracy"].tolist() == [0.1, 0.2]

    bom = tmp_path / "bom.csv"
    bom.write_bytes("epoch,val_accuracy\r\n0,0.25\r\n1,0.5\r\n".encode("utf-8-sig"))
    assert read_history(bom)["val_accuracy"].tolist() == [0.25, 0.5]

    semi = tmp_path / "semi.csv"  # CSVLogger(separator=";")
    semi.write_text("epoch;lr;val_accuracy\n0;0.001;0.25\n1;0.0001;0.5\n")
    frame = read_history(semi)
    assert frame["learning_rate"].tolist() == [0.001, 0.0001]


def test_pandas_to_csv_index_column_is_the_epoch(tmp_path):
    path = tmp_path / "pandas.csv"
    pd.DataFrame({"val_accuracy": [0.5, 0.6, 0.7], "loss": [1.0, 0.8, 0.7]}).to_csv(path)
    frame = read_history(path)
    assert frame["epoch"].tolist() == [0, 1, 2]


def test_nan_loss_is_allowed_but_kept_as_nan(tmp_path):
    path = tmp_path / "diverged.csv"
    path.write_text("epoch,loss,val_accuracy,val_loss\n0,1.2,0.5,1.1\n1,nan,0.1,nan\n")
    frame = read_history(path)
    assert np.isnan(frame["loss"].iloc[1]) and np.isnan(frame["val_loss"].iloc[1])


def test_extra_metrics_are_dropped(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text("epoch,precision,val_accuracy,val_precision\n0,0.3,0.5,0.4\n")
    assert list(read_history(path).columns) == ["epoch", "val_accuracy"]


def test_both_spellings_that_agree_are_merged(tmp_path):
    path = tmp_path / "both.csv"
    path.write_text("epoch,lr,learning_rate,val_accuracy\n0,0.001,0.001,0.5\n")
    assert read_history(path)["learning_rate"].tolist() == [0.001]


def test_validate_epochs_accepts_a_store_table():
    table = pd.DataFrame({"run_id": ["a", "a"], "epoch": [0, 1], "val_accuracy": [0.5, 0.6],
                          "learning_rate": [1e-3, 1e-4]})
    frame = validate_epochs(table)
    assert list(frame.columns) == ["epoch", "val_accuracy", "learning_rate"]
    with pytest.raises(ValstatError, match="val_accuracy"):
        validate_epochs(table.drop(columns="val_accuracy"))
    with pytest.raises(ValstatError, match="non-numeric"):
        validate_epochs(table.assign(val_accuracy=["x", "y"]))


# ---------------------------------------------------------------------------------------------
# broken files: each one ValstatError naming the problem

BROKEN = [
    ("empty.csv", "", r"empty"),
    ("blank.csv", "\n  \n\t\n", r"empty"),
    ("header_only.csv", "epoch,val_accuracy\n", r"no epochs"),
    ("no_val.csv", "epoch,accuracy,loss\n0,0.5,1.0\n", r"no validation-accuracy column.*accuracy, loss"),
    ("text_value.csv", "epoch,val_accuracy\n0,0.5\n1,abc\n", r"non-numeric value 'abc'.*val_accuracy.*line 3"),
    ("val_freq.csv", "epoch,loss,val_accuracy\n0,1.0,NA\n1,0.9,0.5\n", r"'val_accuracy' is NA at line 2.*validation_freq"),
    ("na_lr.csv", "epoch,lr,val_accuracy\n0,NA,0.5\n", r"learning_rate' is NaN at epoch 0"),
    ("empty_cell.csv", "epoch,val_accuracy,loss\n0,,1.0\n", r"empty value.*val_accuracy.*line 2"),
    ("nan_val.csv", "epoch,val_accuracy\n0,0.5\n1,nan\n", r"val_accuracy' is NaN at epoch 1"),
    ("inf_val.csv", "epoch,val_accuracy\n0,inf\n", r"val_accuracy' is inf at epoch 0"),
    ("percent.csv", "epoch,val_accuracy\n0,56.7\n1,60.0\n", r"outside \[0, 1\].*percentages"),
    ("negative.csv", "epoch,val_accuracy\n0,-0.1\n", r"-0.1 at epoch 0, outside \[0, 1\]"),
    ("acc_above_one.csv", "epoch,accuracy,val_accuracy\n0,1.5,0.5\n", r"'accuracy' is 1.5.*outside"),
    ("dup_epoch.csv", "epoch,val_accuracy\n0,0.5\n1,0.6\n1,0.7\n", r"epoch 1 appears more than once"),
    ("appended.csv", "epoch,val_accuracy\n0,0.5\nepoch,val_accuracy\n0,0.6\n", r"header line repeats at line 3"),
    ("ragged.csv", "epoch,val_accuracy\n0,0.5,0.7\n", r"line 2 has 3 fields but the header has 2"),
    ("fraction_epoch.csv", "epoch,val_accuracy\n0.5,0.5\n", r"epoch 0.5.*not a whole number"),
    ("negative_lr.csv", "epoch,lr,val_accuracy\n0,-0.001,0.5\n", r"learning rate -0.001 .*negative"),
    ("nan_lr.csv", "epoch,learning_rate,val_accuracy\n0,nan,0.5\n", r"learning_rate' is NaN"),
    ("no_header.csv", "0.5\n0.6\n", r"no header line"),
    ("dup_column.csv", "epoch,val_accuracy,val_accuracy\n0,0.5,0.5\n", r"'val_accuracy' appears twice"),
    ("conflict.csv", "epoch,lr,learning_rate,val_accuracy\n0,0.1,0.001,0.5\n", r"both 'learning_rate' and 'lr'"),
    ("bad.json", '{"val_accuracy": [0.5, 0.6,', r"not valid JSON.*line 1"),
    ("list.json", "[0.5, 0.6]", r"JSON list, not an object"),
    ("empty_obj.json", "{}", r"empty JSON object"),
    ("unequal.json", '{"val_accuracy": [0.5, 0.6], "loss": [1.0]}', r"unequal lengths \(val_accuracy: 2, loss: 1\)"),
    ("zero_epochs.json", '{"val_accuracy": [], "loss": []}', r"no epochs"),
    ("scalar.json", '{"val_accuracy": 0.5}', r"'val_accuracy' is a JSON float, not a list"),
    ("null.json", '{"val_accuracy": [0.5, null]}', r"non-numeric value null in 'val_accuracy' at position 1"),
    ("string.json", '{"val_accuracy": [0.5, "0.6"]}', r"non-numeric value '0.6'"),
    ("bool.json", '{"val_accuracy": [true, false]}', r"non-numeric value true"),
    ("nan.json", '{"val_accuracy": [0.5, NaN]}', r"val_accuracy' is NaN at epoch 1"),
    ("no_val.json", '{"loss": [1.0, 0.9], "accuracy": [0.4, 0.5]}', r"no validation-accuracy column.*accuracy, loss"),
    ("above_one.json", '{"val_acc": [0.5, 1.2]}', r"'val_accuracy' is 1.2 at epoch 1"),
]


@pytest.mark.parametrize("filename, content, message", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_history_is_one_clear_user_error(tmp_path, filename, content, message):
    path = tmp_path / filename
    path.write_text(content)
    with pytest.raises(ValstatError, match=message) as caught:
        read_history(path)
    text = str(caught.value)
    assert "\n" not in text
    assert filename in text  # the message names the file


def test_missing_file(tmp_path):
    with pytest.raises(ValstatError, match=r"does not exist"):
        read_history(tmp_path / "nope.csv")


def test_directory(tmp_path):
    with pytest.raises(ValstatError, match=r"holds no TensorBoard event files"):
        read_history(tmp_path)


def test_binary_file(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n\x00\x00\xff\xfe\x80")
    with pytest.raises(ValstatError, match=r"not a text file"):
        read_history(path)


def test_metrics_valstat_does_not_use_may_hold_anything(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text("epoch,val_accuracy,note\n0,0.5,warm-up\n1,0.6,\n")
    assert read_history(path)["val_accuracy"].tolist() == [0.5, 0.6]
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"val_accuracy": [0.5, 0.6], "params": {"epochs": 2},
                                "comment": "two epochs", "precision": [0.1]}))
    assert read_history(flat)["val_accuracy"].tolist() == [0.5, 0.6]
