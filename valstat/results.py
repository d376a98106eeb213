"""Typed results of `valstat.summary.summarize`, `valstat.diagnose.diagnose` and
`valstat.against.place_history`: frozen dataclasses, `to_dict()` for JSON (summary.json,
`valstat stats --json`, `valstat diagnose --json`, its "against" part).

Accuracies, variances' square roots and shares are fractions. Every nested statistic is typed;
summary.py builds each from the dict its `valstat.stats` function returns, so an unknown key
fails there. `to_dict()` gives plain JSON types (NaN -> None); a field made with `absent()` is
left out of the JSON while it is None (a key the stats dict has only in some cases).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from valstat.core.plain import OMIT_IF_NONE, to_plain
from valstat.core.settings import Settings


def absent():
    """A field that defaults to None and is left out of to_dict() while None."""
    return field(default=None, metadata={OMIT_IF_NONE: True})


class _Result:
    def to_dict(self) -> dict:
        """Plain JSON-ready dict (the keys of summary.json)."""
        return to_plain(self)


@dataclass(frozen=True)
class ConditionalInterval(_Result):
    """The t interval of the mean (low, high) and for one new run (pi_low, pi_high) on these
    validation images only, kept beside a crossed interval that generalises to new images."""

    low: float
    high: float
    pi_low: float
    pi_high: float
    method: str
    scope: str


@dataclass(frozen=True)
class CrossedComponents(_Result):
    """stats.crossed_mean_interval's variance components, each clipped at 0: rows, columns
    and residual of its table, in the table's units squared."""

    rows: float
    columns: float
    residual: float


@dataclass(frozen=True)
class Interval(_Result):
    """Interval of the mean of a per-run accuracy (fractions): estimate, CI (low, high) at
    `level`, prediction interval for one new run (pi_low, pi_high), sd over runs (ddof 1), n runs,
    n_units (seeds when folds of a seed are clustered, `units` = "seed"; else None), method
    ("t" | "effective-size": Korn-Graubard bounds on the t interval's se, where runs record
    their validation size | "crossed-anova" | "collapse-mixture"), design (how runs share validation images), scope ("new validation
    images" | "these validation images"), note. Crossed intervals add df, components
    (CrossedComponents) and `conditional` (the t interval for these images only). Runs on own
    splits that share some images add shared_variance (fraction², in the se² of the mean).
    Collapse-aware intervals (method "collapse-mixture", fewer than 20 runs on own splits or one
    shared split, which then also keeps `conditional`) add
    collapsed (runs that ended predicting one class), collapse_low/high (bounds on the chance
    of that), learned_low/high (bounds on the other runs' mean) and share_range (lowest,
    highest share of one class in the runs' validation sets)."""

    estimate: float
    low: float
    high: float
    method: str
    level: float
    n: int
    n_units: int | None
    sd: float
    pi_low: float
    pi_high: float
    note: str
    design: str
    scope: str
    units: str | None = absent()
    shared_variance: float | None = absent()
    conditional: ConditionalInterval | None = absent()
    df: float | None = absent()
    components: CrossedComponents | None = absent()
    collapsed: int | None = absent()
    collapse_low: float | None = absent()
    collapse_high: float | None = absent()
    learned_low: float | None = absent()
    learned_high: float | None = absent()
    share_range: list | None = absent()


@dataclass(frozen=True)
class Detectability(_Result):
    """The smallest drop, in images of n, that a "within noise" test detects with `power`
    (stats.sizes.move_detectability; images None: no drop is detectable): test "mcnemar" at the
    chance churn (fraction of images flipping each way) or "fisher" at accuracy p."""

    test: str
    images: int | None
    power: float
    n: int
    churn: float | None = absent()
    p: float | None = absent()


@dataclass(frozen=True)
class WithinNoise(_Result):
    """Epoch-to-epoch accuracy changes (moves) of an arm's runs and how many are within noise
    (p >= alpha; share = within_noise / moves, None without moves); test "mcnemar", "fisher",
    "mcnemar+fisher" or None."""

    share: float | None
    moves: int
    within_noise: int
    test: str | None
    note: str
    detectable: list = field(default_factory=list)       # Detectability, one per test applied


@dataclass(frozen=True)
class VarianceComponent(_Result):
    """One row of stats.variance_components: component (split, seed, residual, total, ...),
    variance (clipped at 0), raw (unclipped), share of the total, method, note."""

    component: str
    variance: float
    raw: float
    share: float | None
    method: str
    note: str


@dataclass(frozen=True)
class FoldNoise(_Result):
    """Jordan's finite-sample variance of one group of runs sharing validation images (fold):
    runs, n images, empirical / independent-errors / distribution variance, finite_sample_share."""

    fold: str
    empirical_variance: float
    independent_errors_variance: float
    distribution_variance: float
    distribution_variance_clipped: float
    finite_sample_share: float
    runs: int
    n: int


@dataclass(frozen=True)
class FiniteSample(_Result):
    """Noise of the finite validation set. method "jordan-independent-errors" (runs sharing
    images; distribution_variance(_clipped), per_fold) or "stratified-per-run" /
    "binomial-per-run" (each run its own images; model_variance(_clipped), n images, and for
    the stratified draw binomial_variance, binomial_share). sampling_variance =
    independent_errors_variance (accuracy², a fraction squared); finite_sample_share of the
    empirical run-to-run variance; folds: validation sets used (= runs per run)."""

    method: str
    sampling_variance: float
    independent_errors_variance: float
    empirical_variance: float
    finite_sample_share: float
    folds: int
    runs: int
    per_fold: list = field(default_factory=list)       # FoldNoise
    distribution_variance: float | None = absent()
    distribution_variance_clipped: float | None = absent()
    model_variance: float | None = absent()
    model_variance_clipped: float | None = absent()
    n: int | None = absent()
    binomial_variance: float | None = absent()
    binomial_share: float | None = absent()


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
class OneClassCollapse(_Result):
    """Of the runs with per-image predictions: how many end predicting one class for every
    image, and how many did so at any recorded epoch."""

    runs_ending_collapsed: int
    runs_ever_collapsed: int
    runs_with_predictions: int


@dataclass(frozen=True)
class OptimismRule(_Result):
    """One epoch-choice rule (stats.optimism_summary row): chosen val accuracy minus truth-set
    accuracy over runs (fractions): mean, CI (low, high), sd, max, n_runs."""

    rule: str
    mean: float
    low: float
    high: float
    sd: float
    max: float
    n_runs: int


@dataclass(frozen=True)
class NoiseOptimism(_Result):
    """Expected optimism (fraction) of picking the best of `epochs` scores on n images from
    noise alone. The independent-epochs bound (stats.expected_max_noise) adds expected_max,
    its simulation interval (low, high) and the true_accuracy it assumed; the per-image
    bootstrap adds `runs` (runs averaged)."""

    expected_optimism: float
    epochs: int
    n: int
    method: str
    expected_max: float | None = absent()
    low: float | None = absent()
    high: float | None = absent()
    true_accuracy: float | None = absent()
    runs: int | None = absent()


@dataclass(frozen=True)
class Optimism(_Result):
    """Best-epoch optimism of an arm with a truth set: per rule, and expected from noise alone
    (per-image where predictions exist, else the independent bound) beside the bound itself."""

    rules: list                                          # OptimismRule
    expected_from_noise: NoiseOptimism | None = absent()
    expected_from_noise_independent: NoiseOptimism | None = absent()


@dataclass(frozen=True)
class DetectableDifference(_Result):
    """stats.minimum_detectable_difference on n images at accuracy p: the smallest increase /
    decrease (fractions; None when none is detectable) a two-sided test at alpha finds with
    `power`; difference = the smaller one, images = difference x n."""

    increase: float | None
    decrease: float | None
    difference: float | None
    images: float | None
    n: int
    p: float
    alpha: float
    power: float
    test: str


@dataclass(frozen=True)
class ArmSummary(_Result):
    """One arm. n_runs: all its runs; n_diverged: of them diverged; n_counted: those that enter
    every statistic below (Settings.count_diverged). val_size_for_halfwidth: {"0.05": images,
    "0.10": images} reaching that CI half-width with val_size_for_halfwidth_probability."""

    n_runs: int
    n_diverged: int
    n_counted: int
    val_size: int | None
    val_size_source: str
    lattice_step: float | None
    final_val_accuracy: Interval | None = None
    best_val_accuracy: Interval | None = None
    moves_within_noise_share: float | None = None
    moves_within_noise: WithinNoise | None = None
    variance_components: list | None = None             # VarianceComponent
    finite_sample: FiniteSample | None = None
    lr_collapse: LrCollapse | None = None
    plateau_cuts: PlateauCuts | None = None
    one_class_collapse: OneClassCollapse | None = None
    optimism: Optimism | None = None
    val_size_for_halfwidth: dict | None = None
    val_size_for_halfwidth_probability: float | None = None
    minimum_detectable_difference: DetectableDifference | None = None


@dataclass(frozen=True)
class McNemarPair(_Result):
    """McNemar on one (seed, fold) pair's final epoch: b (a right, b wrong), c (the reverse),
    statistic, p_value, exact, significant (p < alpha)."""

    seed: int
    fold: int
    b: int
    c: int
    statistic: float
    p_value: float
    exact: bool
    significant: bool


@dataclass(frozen=True)
class CorrectedT(_Result):
    """The t-test of arm A = arm B over the pairs, on differences a - b (fractions): t, df,
    p_value, mean, se. method "corrected-resampled": Nadeau-Bengio's corrected resampled t on
    the pairs' accuracy differences, with the n_train / n_test it corrected for; "crossed":
    every pair scored one shared split, so the test is on the per-image differences with seeds
    and images as crossed random factors (stats.crossed_paired_ttest; n_train, n_test None)."""

    t: float
    df: float
    p_value: float
    mean: float
    se: float
    n_train: int | None = None
    n_test: int | None = None
    method: str = "corrected-resampled"


@dataclass(frozen=True)
class Proportion(_Result):
    """A proportion with its interval: estimate, low, high at `level` over n, method."""

    estimate: float
    low: float
    high: float
    n: int
    level: float
    method: str


@dataclass(frozen=True)
class CollapsedShareChange(_Result):
    """Runs that ended predicting one class: a and b of the pairs (both: in both arms),
    difference b - a (fraction of pairs) and Newcombe's paired interval (low, high)."""

    a: int
    b: int
    both: int
    difference: float
    low: float
    high: float
    method: str


@dataclass(frozen=True)
class SdRatio(_Result):
    """Robust Pitman-Morgan interval of Var(b)/Var(a) over paired runs
    (stats.variance_ratio_interval): estimate (low, high) for the variance ratio, sd_ratio
    (sd_low, sd_high) its square root (high inf, null in JSON, when the pairs cannot bound it),
    sd_a and sd_b (fractions), r the pairs' correlation, n pairs."""

    sd_a: float
    sd_b: float
    estimate: float
    low: float
    high: float
    sd_ratio: float
    sd_low: float
    sd_high: float
    r: float
    n: int
    level: float
    method: str


@dataclass(frozen=True)
class SpreadChange(_Result):
    """How arm b changed arm a's run-to-run spread (stats.paired_spread_change): the collapsed
    share (None when collapse is unknown), the sd ratio among the `learned_pairs` pairs where
    both runs learned (None, with sd_missing "too_few_pairs" or "constant", when not given)."""

    pairs: int
    level: float
    learned_pairs: int
    collapsed: CollapsedShareChange | None
    sd: SdRatio | None
    sd_missing: str | None

    @classmethod
    def from_stats(cls, result: dict) -> "SpreadChange":
        collapsed, sd = result["collapsed"], result["sd"]
        return cls(**{**result, "collapsed": collapsed and CollapsedShareChange(**collapsed),
                      "sd": sd and SdRatio(**sd)})


@dataclass(frozen=True)
class Comparison(_Result):
    """Arm a against arm b, paired on (seed, fold): McNemar per pair on the final epoch,
    P(a > b) (Clopper-Pearson on wins + ties/2), Nadeau-Bengio corrected t, and the change in
    run-to-run spread (valstat.stats.paired.paired_spread_change: collapsed share b minus a,
    sd_b / sd_a among pairs where both learned); pairs_on_different_images: pairs whose two
    runs scored different validation images (val_size arms), None where a pair has no
    per-image predictions."""

    a: str
    b: str
    pairs: int
    mcnemar: list = field(default_factory=list)          # McNemarPair
    mcnemar_significant: int = 0
    pairs_on_different_images: int | None = None         # None: some pair without per-image data
    corrected_t: CorrectedT | None = None
    probability_of_improvement: Proportion | None = None
    spread_change: SpreadChange | None = None
    note: str = ""


@dataclass(frozen=True)
class RunsNeeded(_Result):
    """Paired runs needed to show P(A > B) = gamma at alpha with power 1 - beta (runs), the
    procedure, and Noether's count for independent samples."""

    gamma: float
    alpha: float
    beta: float
    runs: int
    procedure: str
    noether_independent: int


@dataclass(frozen=True)
class Confusion(_Result):
    """A wrong class an image was predicted as, and how many times (over runs and epochs)."""

    label: int
    class_name: str
    times: int


@dataclass(frozen=True)
class UnstableImage(_Result):
    """One validation image of an arm: its file (relative path, 'digits[i]', or None), true label
    and class, flips (= lost + gained over consecutive epochs, summed over runs), transitions,
    runs, final_correct (runs right at their last epoch), final_accuracy, confused_with."""

    example: int
    file: str | None
    label: int
    class_name: str
    flips: int
    lost: int
    gained: int
    transitions: int
    runs: int
    final_correct: int
    final_accuracy: float
    confused_with: list                                  # Confusion


@dataclass(frozen=True)
class Summary(_Result):
    """One experiment: arms {name: ArmSummary} (in arm_names order), comparisons (first arm vs
    each other), runs_needed, unstable_images {arm: [UnstableImage]}, the Settings used, notes."""

    experiment: str | None
    arm_names: list
    class_names: list
    arms: dict
    comparisons: list
    runs_needed: RunsNeeded
    unstable_images: dict
    settings: Settings
    notes: list


# ---------------------------------------------------------------------------------------------
# one history: valstat.diagnose.diagnose (to_dict() = `valstat diagnose --json`)


@dataclass(frozen=True)
class EpochRow(_Result):
    """One epoch of a diagnosed history: epoch (the history's own number), val_accuracy = k/n
    with k images right, Wilson band (low, high) at the diagnosis level; change_images (k minus
    the previous epoch's k), p_value and within_noise of that change (Fisher; None at the first
    epoch); detectable_drop: where within noise, the smallest drop in images from the previous
    epoch's accuracy the test detects at the diagnosis' detect_power (else None)."""

    epoch: int
    val_accuracy: float
    k: int
    low: float
    high: float
    change_images: int | None
    p_value: float | None
    within_noise: bool | None
    detectable_drop: int | None


@dataclass(frozen=True)
class LargestDrop(_Result):
    """stats.largest_drop: the largest epoch-to-epoch fall, from_epoch -> to_epoch, images
    (negative), its p_value, p_adjusted (Bonferroni over the `scanned` moves), within_noise
    (adjusted) and within_noise_unadjusted, smallest_flagged (smallest loss in images the
    adjusted test flags; None: none), discordant (McNemar path; None on Fisher's), test, and
    the simultaneous interval (low, high) for the change in accuracy (fractions)."""

    from_epoch: int
    to_epoch: int
    images: int
    within_noise: bool
    p_value: float
    p_adjusted: float
    scanned: int
    within_noise_unadjusted: bool
    smallest_flagged: int | None
    discordant: int | None
    test: str
    low: float
    high: float

    @classmethod
    def from_stats(cls, drop: dict) -> "LargestDrop":
        """From the dict stats.largest_drop returns (numpy values made plain)."""
        return cls(**to_plain(drop))


@dataclass(frozen=True)
class WholeRunChange(_Result):
    """The first epoch against the last as one change, with the rows' test: images (k_last -
    k_first), p_value, within_noise."""

    from_epoch: int
    to_epoch: int
    images: int
    p_value: float
    within_noise: bool


@dataclass(frozen=True)
class CutsAfterTies(_Result):
    """Rate cuts read as ReduceLROnPlateau(monitor) with the patience inferred from the history
    (None: no patience fits, consistent false): cuts, and how many came after ties only, after
    a worse epoch, or neither (other)."""

    monitor: str
    patience_inferred: int | None
    cuts: int
    after_ties_only: int
    after_worse: int
    other: int
    consistent: bool


@dataclass(frozen=True)
class OptimismBound(_Result):
    """Basis of a history's best-epoch optimism (an upper bound): the plateau_epochs (within
    noise of the best, Fisher; `epochs` of `epochs_total`) as one model at their mean accuracy
    (true_accuracy) measured independently on val_size images; expected_max of their scores and
    the 2.5/97.5 percentiles (low, high) of the optimism in that model (fractions). The model
    overstates the noise of a history's correlated epochs, so low..high is not an interval for
    its own optimism (simulated flat curves: inside it 15-53% of the time); expected_max is the
    upper bound."""

    true_accuracy: float
    epochs: int
    epochs_total: int
    plateau_epochs: list                                 # the history's epoch numbers
    val_size: int
    expected_max: float
    low: float
    high: float
    upper_bound: bool
    assumption: str


@dataclass(frozen=True)
class Diagnosis(_Result):
    """One training history (valstat.diagnose): val_size images (inferred from the accuracy
    lattice or given), lattice_step = 1/val_size, level; the epochs ([EpochRow]); changes_tested
    and changes_beyond_noise (epoch-to-epoch changes), noise_test (text), detect_power and
    detectable_drop_last (the smallest detectable drop at the last epoch's accuracy, images;
    None: none is); largest_drop and first_to_last (None when the curve never fell / has one
    epoch); the learning rate (lr_* None without a rate column): first epoch below
    lr_collapse_threshold of the start, epochs from it to the end (counting it), the rate then,
    initial and final rate, lr_cuts (epochs whose rate fell), lr_cuts_after_ties (None: never
    cut); best
    val-accuracy / val-loss epochs (first on ties); best_epoch_expected_optimism: an upper bound
    (fraction) on how far the best epoch's val accuracy exceeds its true accuracy from noise
    alone, on the basis best_epoch_optimism; has_val_loss; verdict (English, from the fields
    above: diagnose.verdict); val_loss_not_finite: epochs whose val_loss is NaN or infinite
    (left out of the best val-loss epoch); diverged_epoch: the first epoch from which the
    training loss is NaN or infinite to the end (None: never), where the epochs above end;
    loss_not_finite: the epochs before it with a NaN or infinite training loss."""

    val_size: int
    val_size_inferred: bool
    lattice_step: float
    level: float
    epochs: list                                         # EpochRow
    noise_test: str
    changes_tested: int
    changes_beyond_noise: int
    largest_drop: LargestDrop | None
    first_to_last: WholeRunChange | None
    detect_power: float
    detectable_drop_last: int | None
    lr_collapse_epoch: int | None
    lr_epochs_after_collapse: int | None
    lr_initial: float | None
    lr_final: float | None
    lr_cuts: list | None                                 # epoch numbers
    lr_cuts_after_ties: CutsAfterTies | None
    lr_collapse_threshold: float
    best_val_accuracy_epoch: int | None
    best_val_loss_epoch: int | None
    best_epoch_expected_optimism: float | None
    best_epoch_optimism: OptimismBound
    lr_at_collapse: float | None
    has_val_loss: bool
    val_loss_not_finite: list                            # epoch numbers (NaN or inf val_loss)
    loss_not_finite: list                                # epoch numbers (NaN or inf training loss)
    diverged_epoch: int | None                           # where the training loss stayed NaN or inf
    verdict: str


# ---------------------------------------------------------------------------------------------
# one history among a store's reruns: valstat.against.place_history (to_dict() = the "against"
# part of `valstat diagnose --against --json`)


@dataclass(frozen=True)
class PlacedValue(_Result):
    """stats.against.place_value: one number of the history among the reruns' numbers (reruns
    R): its percentile (0..100, ties half), the reruns' median and central band (low, high) at
    the placement level, typical (inside the band a run like the reruns leaves with chance at
    most 1 - level; None outside the reruns' range when they are too few to call it unusual,
    stats.against.verdict_reruns)."""

    value: float
    reruns: int
    percentile: float
    median: float
    low: float
    high: float
    typical: bool | None


@dataclass(frozen=True)
class PlacedMetric(_Result):
    """One metric of one epoch among the reruns that reached that epoch (reruns; 0: none, and
    then percentile, median, low, high and outside are None); outside -1 below the band, +1
    above, 0 inside."""

    value: float
    reruns: int
    percentile: float | None
    median: float | None
    low: float | None
    high: float | None
    outside: int | None


@dataclass(frozen=True)
class EpochPlacement(_Result):
    """One epoch of the history: its val accuracy and val loss placed (absent where the history
    has no finite value for the metric)."""

    epoch: int
    val_accuracy: PlacedMetric | None = absent()
    val_loss: PlacedMetric | None = absent()


@dataclass(frozen=True)
class OutsideCount(_Result):
    """Epochs where a metric left the reruns' band, of the epochs compared (reached by a rerun);
    expected: in how many of them a run like the reruns would leave it (leave-one-out over the
    reruns; None with fewer than 2 reruns at some epoch)."""

    epochs: int
    compared: int
    expected: float | None = None


@dataclass(frozen=True)
class CollapsePlacement(_Result):
    """The history's learning-rate collapse (epoch; None: never) among the reruns: recorded
    (the history has a rate), reruns_with_rate, reruns_collapsed, placed (the epoch among the
    collapsed reruns' epochs; None when either never collapsed), typical (at least
    (1 - level)/2 of the reruns share its fate, and the epoch is inside their band; None
    without rates)."""

    epoch: int | None
    recorded: bool
    reruns_collapsed: int
    reruns_with_rate: int
    placed: PlacedValue | None
    typical: bool | None


@dataclass(frozen=True)
class Placement(_Result):
    """One history among a store's reruns scored on as many validation images (val_size): the
    store, the arms and number of reruns, level, collapse_threshold; per epoch ([EpochPlacement]),
    outside {metric: OutsideCount}, the largest drop in images placed among the reruns' (None
    when no rerun has a finite curve) and the learning-rate collapse."""

    store: str
    val_size: int
    arms: list
    reruns: int
    level: float
    collapse_threshold: float
    epochs: list                                         # EpochPlacement
    outside: dict                                        # metric -> OutsideCount
    largest_drop: PlacedValue | None
    lr_collapse: CollapsePlacement
