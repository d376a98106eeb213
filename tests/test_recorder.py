"""The Keras callback on a user's own model: a real tiny fit recorded, then `valstat stats`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import valstat
from valstat.store import load_tables


def test_recorder_stores_a_users_fit_that_stats_then_reads(tmp_path):
    import keras

    from valstat.keras import Recorder

    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 6)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=150) > 0).astype("int64")
    x_val, y_val = x[:30], y[:30]
    keras.utils.set_random_seed(0)
    for seed in (0, 1):
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy",
                      metrics=["accuracy"])
        recorder = Recorder(tmp_path, validation_data=(x_val, keras.utils.to_categorical(y_val)),
                            arm="dense", seed=seed, class_names=["neg", "pos"])
        schedule = keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", factor=0.1,
                                                     patience=1)
        history = model.fit(x[30:], keras.utils.to_categorical(y[30:]), epochs=4, verbose=0,
                            callbacks=[recorder, schedule])

    tables = load_tables(tmp_path)
    assert sorted(tables.runs.run_id) == ["dense/s0/f0", "dense/s1/f0"]
    last = tables.epochs[tables.epochs.run_id == "dense/s1/f0"]
    # the logs Keras kept are the recorder's own numbers, and the schedule acted on them
    assert np.allclose(last.val_accuracy, history.history["val_accuracy"])
    assert np.allclose(last.learning_rate, [float(v) for v in history.history["learning_rate"]],
                       rtol=1e-6)
    final = model.predict(x_val, verbose=0).argmax(axis=1)
    stored = tables.predictions.query("run_id == 'dense/s1/f0' and epoch == 3")
    assert np.array_equal(stored.predicted.to_numpy(), final)
    assert last.val_accuracy.iloc[-1] == np.mean(final == y_val)

    result = valstat("stats", tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["arms"]["dense"]["n_runs"] == 2
    # both runs scored the same x_val: one shared split, analysed for new images (2 seeds:
    # collapse-aware, their learned mean from the crossed table), and for these images
    final = summary["arms"]["dense"]["final_val_accuracy"]
    assert final["design"] == "one shared split" and final["method"] == "collapse-mixture"
    assert final["scope"] == "new validation images" and final["conditional"]["scope"] == "these validation images"


def _fit(model, x, y, recorder, epochs=3):
    return model.fit(x, y, epochs=epochs, verbose=0, callbacks=[recorder])


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")
    return x, y


def test_recorder_reads_a_sigmoid_classifier_with_integer_labels(tmp_path):
    import keras

    from valstat.keras import Recorder

    x, y = _data()
    y = (y > 0).astype("int64")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    recorder = Recorder(tmp_path, validation_data=(x[:30], y[:30]), arm="sigmoid")
    _fit(model, x[30:], y[30:], recorder)
    tables = load_tables(tmp_path)
    p1 = model.predict(x[:30], verbose=0).reshape(-1).astype(np.float64)
    stored = tables.predictions.query("epoch == 2").sort_values("example")
    assert np.array_equal(stored.predicted.to_numpy(), (p1 > 0.5).astype(int))
    expected_p_true = np.where(y[:30] == 1, p1, 1 - p1)
    assert np.allclose(stored.p_true.to_numpy(), expected_p_true, atol=1e-6)
    assert tables.meta["dataset"]["class_names"] == ["0", "1"]


def test_recorder_turns_logits_into_probabilities(tmp_path):
    import keras

    from valstat.keras import Recorder

    x, y = _data(seed=2)
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    recorder = Recorder(tmp_path, validation_data=(x[:30], y[:30]), arm="logits")
    history = _fit(model, x[30:], y[30:], recorder)
    logits = model.predict(x[:30], verbose=0).astype(np.float64)
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    stored = load_tables(tmp_path).predictions.query("epoch == 2").sort_values("example")
    assert np.allclose(stored.p_true.to_numpy(), softmax[np.arange(30), y[:30]], atol=1e-6)
    assert history.history["val_loss"][-1] == pytest.approx(
        np.mean(-np.log(softmax[np.arange(30), y[:30]])), rel=1e-5)


def test_recorder_refuses_outputs_that_are_not_probabilities(tmp_path):
    import keras

    from valstat.errors import ValstatError
    from valstat.keras import Recorder

    x, y = _data(seed=3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    recorder = Recorder(tmp_path, validation_data=(x[:30], y[:30]))
    with pytest.raises(ValstatError, match="from_logits=True"):
        _fit(model, x[30:], y[30:], recorder)
    with pytest.raises(ValstatError, match="one-hot"):
        Recorder(tmp_path, validation_data=(x[:30], np.full((30, 3), 0.5)))


def test_recorder_starts_afresh_when_fit_is_called_again(tmp_path):
    import keras

    from valstat.keras import Recorder

    x, y = _data(seed=4)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    recorder = Recorder(tmp_path, validation_data=(x[:30], y[:30]), seed=0)
    _fit(model, x[30:], y[30:], recorder, epochs=3)
    recorder.seed = 1
    _fit(model, x[30:], y[30:], recorder, epochs=2)
    tables = load_tables(tmp_path)
    counts = tables.epochs.groupby("run_id").size().to_dict()
    assert counts == {"main/s0/f0": 3, "main/s1/f0": 2}
    assert len(tables.predictions.query("run_id == 'main/s1/f0'")) == 2 * 30


def test_recorder_refuses_a_sweep_store(tiny_sweep):
    from valstat.errors import ValstatError
    from valstat.keras import Recorder

    x, y = _data()
    with pytest.raises(ValstatError, match="sweep store"):
        Recorder(tiny_sweep, validation_data=(x[:30], y[:30]))


def test_recorder_knows_validation_images_by_their_pixels(tmp_path):
    import keras

    from valstat.keras import Recorder

    x, y = _data(n=200, seed=6)
    keras.utils.set_random_seed(6)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    # seeds 0 and 1 each draw their own 30 validation images; seed 2 repeats seed 0's, reordered
    sets = {0: np.arange(0, 30), 1: np.arange(30, 60), 2: np.arange(29, -1, -1)}
    for seed, rows in sets.items():
        _fit(model, x[100:], y[100:], Recorder(tmp_path, validation_data=(x[rows], y[rows]), seed=seed))
    tables = load_tables(tmp_path)
    examples = {run: sorted(group.example.unique()) for run, group in
                tables.predictions.query("epoch == 0").groupby("run_id")}
    assert examples["main/s0/f0"] == examples["main/s2/f0"] == list(range(30))
    assert examples["main/s1/f0"] == list(range(30, 60))
    first = tables.predictions.query("run_id == 'main/s0/f0' and epoch == 0").set_index("example")
    again = tables.predictions.query("run_id == 'main/s2/f0' and epoch == 0").set_index("example")
    assert first.label.equals(again.label.loc[first.index])      # the same image, the same label
    summary = json.loads(valstat("stats", tmp_path, "--json").stdout)
    assert summary["arms"]["main"]["final_val_accuracy"]["design"] == "seeds x shared splits"


def test_recorder_refuses_a_recorded_run_before_training_and_reads_only_arrays(tmp_path):
    import keras

    from valstat.errors import ValstatError
    from valstat.keras import Recorder

    x, y = _data(seed=7)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    _fit(model, x[30:], y[30:], Recorder(tmp_path, validation_data=(x[:30], y[:30])), epochs=1)
    epochs_seen = []
    spy = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs_seen.append(epoch))
    with pytest.raises(ValstatError, match=r"main/s0/f0 is already in .*pass another seed="):
        model.fit(x[30:], y[30:], epochs=3, verbose=0,
                  callbacks=[Recorder(tmp_path, validation_data=(x[:30], y[:30])), spy])
    assert epochs_seen == []                     # refused before the first epoch
    with pytest.warns(UserWarning, match="sample weights are not used"):
        Recorder(tmp_path, validation_data=(x[:30], y[:30], np.ones(30)), seed=1)
    with pytest.raises(ValstatError, match=r"must be the arrays \(x_val, y_val\).*np.concatenate"):
        Recorder(tmp_path, validation_data=iter([(x[:30], y[:30])]), seed=1)
