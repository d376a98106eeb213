"""Keras 3 `ReduceLROnPlateau`, re-implemented once for the host: the fused training engine
decides every run's rate cuts with it, and the statistics simulate schedules with it.

Semantics copied from keras/src/callbacks/reduce_lr_on_plateau.py (Keras 3.15):
* improvement is strict and compared in float32: float32(v - min_delta) > float32(best) in max
  mode, float32(v + min_delta) < float32(best) in min mode; the first epoch always improves;
  a NaN never improves after the first epoch;
* a cooldown epoch resets the wait counter; after `patience` epochs without improvement (outside
  cooldown) the rate becomes max(lr * factor, min_lr) if lr > float32(min_lr), the wait resets
  and the cooldown starts;
* the rate lives in a float32 optimizer variable: it is read back as float32 each time.
No keras import: this module is pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Plateau:
    """The state of one run's ReduceLROnPlateau; `step(value)` once per epoch end.

    lr: the rate in use (already float32-rounded); mode: "max" or "min".
    """

    lr: float
    factor: float = 0.1
    patience: int = 10
    min_delta: float = 1e-4
    cooldown: int = 0
    min_lr: float = 0.0
    mode: str = "min"
    best: float | None = None
    wait: int = 0
    cooldown_counter: int = 0
    cuts: list = field(default_factory=list)

    def __post_init__(self):
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")
        self.lr = float(np.float32(self.lr))
        self.min_delta = abs(float(self.min_delta))

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return bool(np.float32(value - self.min_delta) > np.float32(self.best))
        return bool(np.float32(value + self.min_delta) < np.float32(self.best))

    def step(self, value: float, epoch: int | None = None) -> float:
        """Feed the monitored value logged at the end of an epoch; returns the rate for the next."""
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(value):
            self.best = value
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience and self.lr > np.float32(self.min_lr):
                self.lr = float(np.float32(max(self.lr * self.factor, self.min_lr)))
                self.cooldown_counter = self.cooldown
                self.wait = 0
                if epoch is not None:
                    self.cuts.append(epoch)
        return self.lr


def plateau_schedule(values, lr0: float, factor: float = 0.1, patience: int = 10,
                     min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0,
                     mode: str = "min") -> np.ndarray:
    """Rate in use during each epoch (shape (epochs,)) for the monitored `values` (shape
    (epochs,), logged at each epoch's end): a cut decided after epoch t shows from epoch t + 1."""
    plateau = Plateau(lr0, factor, patience, min_delta, cooldown, min_lr, mode)
    out = np.empty(len(values))
    for epoch, value in enumerate(np.asarray(values, dtype=float)):
        out[epoch] = plateau.lr
        plateau.step(float(value), epoch)
    return out
