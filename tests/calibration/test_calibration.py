"""Calibration (fast): every interval valstat prints covers its truth and every named test has
its stated power or size, in simulated designs with known truth (valstat.stats.calibration).

400 seeded replications per design; a check fails when its rate is more than 3 binomial
standard errors below the floor (0.93 coverage for a nominal 95 % interval, the stated power)
or above a size of 0.05. The full table (more replications) is benchmarks/calibration.py.
"""

import pytest

from valstat.stats import calibration

REPS = 400


@pytest.fixture(scope="module")
def checks():
    return calibration.run_all(reps=REPS, seed=20261128)


def test_every_check_passes(checks):
    failed = [f"{c.name} [{c.design}]: {c.rate:.3f} ({c.kind}, floor {c.floor})" for c in checks if not c.ok()]
    assert not failed, "\n".join(failed)


def test_every_printed_interval_and_named_test_is_checked(checks):
    names = " | ".join(c.name for c in checks)
    for printed in ("binomial interval", "paired difference interval", "largest-drop interval",
                    "mean accuracy interval (t)", "mean accuracy interval (collapse-aware)",
                    "mean accuracy interval (collapse-aware, seeds as units)", "mean accuracy interval (t over seeds)",
                    "mean accuracy interval (crossed)", "one-new-run prediction",
                    "P(A > B) interval", "best-epoch optimism interval", "corrected resampled t-test",
                    "crossed t-test on per-image differences",
                    "mid-p McNemar", "per-epoch band of the curve figure", "at the detectable drop",
                    "Fisher test at the minimum detectable drop", "excludes 1/2 at runs_needed",
                    "advised validation size", "spread ratio interval (Pitman-Morgan",
                    "collapsed-share change interval"):
        assert printed in names
    designs = " | ".join(c.design for c in checks)
    for design in ("own split per seed", "own folds", "one shared split", "shared folds", "collapsed", "concordant"):
        assert design in designs


def test_a_miscalibrated_interval_fails_the_check():
    # the check can fail: the t interval of the mean treats seeds on one shared split as
    # independent, which does not cover the mean on new images
    import numpy as np
    from scipy.special import expit

    from valstat.stats import mean_interval

    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(REPS):
        images = rng.normal(0, calibration.IMAGE_SD, calibration.N_IMAGES)
        seeds = rng.normal(0, calibration.SEED_SD, 20)
        y = rng.random((20, calibration.N_IMAGES)) < expit(calibration.MU + seeds[:, None] + images[None, :])
        truth = float(calibration._mean_expit(calibration.MU, np.hypot(calibration.SEED_SD, calibration.IMAGE_SD)))
        res = mean_interval(y.mean(axis=1), method="t")
        hits += res["low"] <= truth <= res["high"]
    check = calibration.Check("t treating shared images as independent", "one shared split", "coverage", 0.95,
                              hits, REPS)
    assert not check.ok()
