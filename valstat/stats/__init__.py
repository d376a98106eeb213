"""valstat.stats: pure numpy/scipy/statsmodels/pandas statistics (no Keras, no matplotlib).

One module per topic: intervals, lattice, variance, paired, sizes, dynamics, selection.
Accuracies are fractions in [0, 1]; counts are images; epochs are numbered from 0.
"""

from valstat.stats.dynamics import best_epochs, lr_collapse, one_class_collapse, plateau_cuts_after_ties
from valstat.stats.intervals import (
    binomial_interval,
    collapse_mean_interval,
    crossed_mean_interval,
    effective_size_bounds,
    mean_interval,
    shared_image_covariance,
)
from valstat.stats.lattice import curve_changes, infer_val_size, largest_drop, lattice_step
from valstat.stats.paired import (
    corrected_resampled_ttest,
    crossed_paired_ttest,
    mcnemar,
    paired_difference_interval,
    paired_spread_change,
    probability_of_improvement,
    variance_ratio_interval,
)
from valstat.stats.selection import expected_max_noise, optimism_summary, selection_optimism
from valstat.stats.sizes import (
    detectable_drop,
    minimum_detectable_difference,
    move_detectability,
    runs_needed,
    val_size_for_halfwidth,
)
from valstat.stats.variance import (
    binomial_sampling_variance,
    finite_sample_by_fold,
    finite_sample_variance,
    stratified_sampling_variance,
    variance_components,
    variance_components_with_noise,
)

__all__ = [
    "best_epochs",
    "binomial_interval",
    "binomial_sampling_variance",
    "collapse_mean_interval",
    "corrected_resampled_ttest",
    "crossed_paired_ttest",
    "crossed_mean_interval",
    "effective_size_bounds",
    "curve_changes",
    "detectable_drop",
    "expected_max_noise",
    "finite_sample_by_fold",
    "finite_sample_variance",
    "infer_val_size",
    "largest_drop",
    "lattice_step",
    "lr_collapse",
    "mcnemar",
    "mean_interval",
    "minimum_detectable_difference",
    "move_detectability",
    "one_class_collapse",
    "optimism_summary",
    "paired_difference_interval",
    "paired_spread_change",
    "plateau_cuts_after_ties",
    "probability_of_improvement",
    "runs_needed",
    "selection_optimism",
    "shared_image_covariance",
    "stratified_sampling_variance",
    "val_size_for_halfwidth",
    "variance_ratio_interval",
    "variance_components",
    "variance_components_with_noise",
]
