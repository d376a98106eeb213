"""valstat.stats.plateau against Keras's own ReduceLROnPlateau driven with the same values."""

from __future__ import annotations

import types

import numpy as np
import pytest

from valstat.stats.plateau import Plateau, plateau_schedule


def keras_rates(values, lr0, **settings):
    """Rate in use during each epoch when Keras's callback sees `values` (reference)."""
    import keras

    optimizer = keras.optimizers.Adam(learning_rate=lr0)
    callback = keras.callbacks.ReduceLROnPlateau(monitor="m", verbose=0, **settings)
    callback.set_model(types.SimpleNamespace(optimizer=optimizer, metrics=[]))
    callback.on_train_begin()
    rates = []
    for epoch, value in enumerate(values):
        rates.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
        callback.on_epoch_end(epoch, {"m": value})
    return np.array(rates)


CASES = [
    dict(factor=0.1, patience=2, min_delta=1e-4, mode="max"),
    dict(factor=0.5, patience=1, min_delta=0.0, mode="max", cooldown=2),
    dict(factor=0.1, patience=2, min_delta=1e-4, mode="min", min_lr=1e-6),
    dict(factor=0.3, patience=3, min_delta=0.05, mode="min", cooldown=1, min_lr=2e-5),
]


@pytest.mark.parametrize("settings", CASES)
def test_plateau_matches_keras_on_lattice_and_continuous_values(settings):
    rng = np.random.default_rng(7)
    for trial in range(20):
        if trial % 2:   # a 30-image accuracy lattice: ties are common
            values = rng.integers(10, 16, size=25) / 30
        else:           # a continuous loss, with a NaN now and then
            values = np.cumsum(rng.normal(-0.01, 0.05, size=25)) + 2.0
            values[rng.integers(0, 25)] = np.nan
        ours = plateau_schedule(values, 1e-3, **settings)
        np.testing.assert_array_equal(ours, keras_rates(values, 1e-3, **settings))


def test_plateau_float32_tie_is_not_an_improvement():
    # 0.7 + 1e-4 + 1e-12 beats 0.7 + 1e-4 in float64, not in float32 (Keras compares in float32)
    plateau = Plateau(1e-3, patience=1, min_delta=1e-4, mode="max")
    plateau.step(0.7)
    assert plateau.step(0.7 + 1e-4 + 1e-12) < np.float32(1e-3)
