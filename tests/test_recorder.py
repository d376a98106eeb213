"""The Keras callback on a user's own model: a real tiny fit recorded, then `valstat stats`."""

from __future__ import annotations

import json

import numpy as np

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
