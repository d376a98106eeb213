"""Typed results of `valstat.summary.summarize`: frozen dataclasses, `to_dict()` for JSON.

Accuracies are fractions. Nested statistics (intervals, tests) are the dicts `valstat.stats`
returns; `to_dict()` turns everything into plain JSON types (NaN -> None).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from valstat.core.plain import to_plain


class _Result:
    def to_dict(self) -> dict:
        """Plain JSON-ready dict (the keys of summary.json)."""
        return to_plain(self)


@dataclass(frozen=True)
class LrCollapse(_Result):
    """Runs whose learning rate fell below `threshold` of its start; median epoch of that (store
    epochs, from 0) and median epochs run from it to the end (None when no run collapsed)."""

    runs: int
    median_epoch: float | None
    median_epochs_after: float | None
    threshold: float


@dataclass(frozen=True)
class PlateauCuts(_Result):
    """ReduceLROnPlateau cuts of an arm's runs under the schedule (monitor, mode, patience) the
    arm used, or the one inferred from the recorded rate (`inferred`): cuts in all, and how many
    came after ties only, after a worse epoch, or neither ("other": the schedule does not explain
    them)."""

    monitor: str
    mode: str
    patience: int
    inferred: bool
    cuts: int
    after_ties_only: int
    after_worse: int
    other: int


@dataclass(frozen=True)
class ArmSummary(_Result):
    """One arm. n_runs: all its runs; n_diverged: of them diverged; n_counted: those that enter
    every statistic below (Settings.count_diverged). final/best_val_accuracy: interval dicts
    (estimate, low, high, pi_low, pi_high, sd, n, method, design, scope, ...)."""

    n_runs: int
    n_diverged: int
    n_counted: int
    val_size: int | None
    val_size_source: str
    lattice_step: float | None
    final_val_accuracy: dict | None = None
    best_val_accuracy: dict | None = None
    moves_within_noise_share: float | None = None
    moves_within_noise: dict | None = None
    variance_components: list | None = None
    finite_sample: dict | None = None
    lr_collapse: LrCollapse | None = None
    plateau_cuts: PlateauCuts | None = None
    one_class_collapse: dict | None = None
    optimism: dict | None = None
    val_size_for_halfwidth: dict | None = None
    val_size_for_halfwidth_probability: float | None = None
    minimum_detectable_difference: float | None = None


@dataclass(frozen=True)
class Comparison(_Result):
    """Arm a against arm b, paired on (seed, fold): McNemar per pair on the final epoch,
    P(a > b) (Clopper-Pearson on wins + ties/2), Nadeau-Bengio corrected t, and the change in
    run-to-run spread (valstat.stats.paired.paired_spread_change: collapsed share b minus a,
    sd_b / sd_a among pairs where both learned)."""

    a: str
    b: str
    pairs: int
    mcnemar: list = field(default_factory=list)
    mcnemar_significant: int = 0
    corrected_t: dict | None = None
    probability_of_improvement: dict | None = None
    spread_change: dict | None = None
    note: str = ""


@dataclass(frozen=True)
class Summary(_Result):
    """One experiment: arms (in arm_names order), comparisons (first arm vs each other),
    runs_needed, unstable_images {arm: [...]}, settings (level, collapse_threshold,
    count_diverged), notes."""

    experiment: str | None
    arm_names: list
    class_names: list
    arms: dict
    comparisons: list
    runs_needed: dict
    unstable_images: dict
    settings: dict
    notes: list
