"""How many images and runs: interval width, detectable differences, runs for P(A > B)."""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import stats as sps

from valstat.errors import ValstatError
from valstat.stats._checks import as_number, check_level, check_positive_int
from valstat.stats.intervals import binomial_interval
from valstat.stats.paired import mcnemar_midp_p


def _fraction(value, name, low_open=False, high_open=False):
    x = as_number(value, f"{name} must be a number, got {value!r}")
    too_low = x <= 0 if low_open else x < 0
    too_high = x >= 1 if high_open else x > 1
    if not math.isfinite(x) or too_low or too_high:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValstatError(f"{name} must be in {lo}0, 1{hi}, got {value!r}")
    return x


def _halfwidth_reached(n, p, halfwidth, level, method):
    """P(half-width of the interval at K/n <= halfwidth), K ~ Binomial(n, p); one entry per n."""
    out = np.empty(n.size)
    for i, m in enumerate(n):
        k = np.arange(m + 1)
        low, high = binomial_interval(k, np.full(k.size, m), level, method)
        out[i] = sps.binom.pmf(k, m, p)[(high - low) / 2 <= halfwidth].sum()
    return out


def val_size_for_halfwidth(p, halfwidth, level: float = 0.95, method: str = "wilson", probability: float = 0.8,
                           max_n: int = 100_000) -> int:
    """Smallest validation size n whose interval reaches a half-width with a stated probability.

    p: expected accuracy (fraction); halfwidth: target half-width (fraction, e.g. 0.05 for
    ±5 points); probability: the chance, over the K ~ Binomial(n, p) images a model gets
    right, that the interval's half-width (high - low)/2 of binomial_interval(K, n, level,
    method) is at most halfwidth (0.8 by default; at k = round(p·n) alone the size misses
    the target about half the time). n is searched upward from a quarter of the size that
    reaches the target at k = round(p·n); ValstatError if none up to max_n does.
    """
    p = _fraction(p, "p")
    halfwidth = _fraction(halfwidth, "halfwidth", low_open=True)
    probability = check_level(probability, "probability")
    max_n = check_positive_int(max_n, "max_n")
    start, stop, typical = 1, min(max_n, 1024), None
    while start <= max_n and typical is None:
        n = np.arange(start, stop + 1)
        low, high = binomial_interval(np.floor(p * n + 0.5), n, level, method)
        ok = (high - low) / 2 <= halfwidth
        typical = int(n[np.argmax(ok)]) if ok.any() else None
        start, stop = stop + 1, min(max_n, stop * 8)
    if typical is None:
        raise ValstatError(f"no validation size up to {max_n} images reaches a half-width of {halfwidth:g}")
    start = max(1, typical // 4)
    while start <= max_n:
        n = np.arange(start, min(max_n, start + 63) + 1)
        ok = _halfwidth_reached(n, p, halfwidth, level, method) >= probability
        if ok.any():
            return int(n[np.argmax(ok)])
        start = int(n[-1]) + 1
    raise ValstatError(f"no validation size up to {max_n} images reaches a half-width of {halfwidth:g} "
                    f"with probability {probability:g}")


@functools.lru_cache(maxsize=8)
def fisher_p_table(n: int) -> np.ndarray:
    """Two-sided Fisher exact p-values for every k1/n vs k2/n, shape (n + 1, n + 1).

    Conditional on k1 + k2 = t, k1 is hypergeometric (2n images, n in group 1, t right); the
    p-value sums the probabilities no larger than the observed one (relative tolerance
    1e-7, as scipy.stats.fisher_exact does).
    """
    k = np.arange(n + 1)
    table = np.ones((n + 1, n + 1))
    for t in range(2 * n + 1):
        k1 = k[(k <= t) & (t - k <= n)]
        pmf = sps.hypergeom.pmf(k1, 2 * n, n, t)
        order = np.sort(pmf)
        cumulative = np.cumsum(order)
        idx = np.searchsorted(order, pmf * (1 + 1e-7), side="right") - 1
        table[k1, t - k1] = np.minimum(1.0, cumulative[idx])
    return table


def fisher_power(n: int, p1: float, p2: float, alpha: float = 0.05) -> float:
    """Exact power of the two-sided Fisher test of k1/n vs k2/n, K1 ~ Bin(n, p1), K2 ~ Bin(n, p2)."""
    k = np.arange(n + 1)
    reject = fisher_p_table(n) < alpha
    return float(sps.binom.pmf(k, n, p1) @ reject @ sps.binom.pmf(k, n, p2))


def _detectable(n, p, alpha, power, edge):
    """p2 between p and `edge` (0 or 1) where Fisher's power first reaches `power`; None if never."""
    if fisher_power(n, p, edge, alpha) < power:
        return None
    near, far = p, float(edge)
    for _ in range(40):
        mid = (near + far) / 2
        near, far = (near, mid) if fisher_power(n, p, mid, alpha) >= power else (mid, far)
    return far - p


def minimum_detectable_difference(n, p, alpha: float = 0.05, power: float = 0.8) -> dict:
    """Smallest accuracy difference valstat's test of two accuracies on n images detects.

    The test is the one valstat applies to two validation accuracies k1/n and k2/n (e.g. two
    epochs, when per-image predictions are missing): two-sided Fisher exact test at `alpha`,
    treating them as independent binomials. Power is computed exactly (all k1, k2), and the
    difference found by bisection on the second accuracy p2. n: images per model (>= 2);
    p: baseline accuracy (fraction).
    Returns dict: increase (p2 - p > 0; None when no p2 <= 1 reaches the power), decrease
    (p2 - p < 0; None when no p2 >= 0 does), difference (the larger magnitude, i.e.
    detectable in either direction), images (difference·n), n, p, alpha, power, test.
    """
    n = check_positive_int(n, "n")
    if n < 2:
        raise ValstatError("n must be at least 2 images per group")
    p = _fraction(p, "p")
    alpha = check_level(alpha, "alpha")
    power = check_level(power, "power")
    up = _detectable(n, p, alpha, power, 1.0)
    down = _detectable(n, p, alpha, power, 0.0)
    sizes = [abs(d) for d in (up, down) if d is not None]
    difference = max(sizes) if sizes else None
    return {
        "increase": up, "decrease": down, "difference": difference,
        "images": None if difference is None else difference * n,
        "n": n, "p": p, "alpha": alpha, "power": power, "test": "fisher-exact two-sided",
    }


def runs_needed(gamma: float = 0.75, alpha: float = 0.05, beta: float = 0.05, max_runs: int = 10_000) -> int:
    """Paired runs for valstat's P(A > B) interval to exclude ½ with power 1 - beta at P = gamma.

    The procedure is the one the report uses: probability_of_improvement's two-sided
    level 1 - alpha interval (Clopper-Pearson on wins + ties/2) over N paired runs; A is
    called better when it lies wholly on gamma's side of ½. Power is exact for pairs without
    ties (wins ~ Binomial(N, gamma)); ties lower it. Returns the smallest N with power
    >= 1 - beta (power saw-tooths in N, so a slightly larger N can fall just short).
    Noether's (1987) N = (z_{1-alpha} + z_{1-beta})² / (6 (gamma - ½)²), 29 at the defaults,
    is for two independent samples and a one-sided test: see noether_runs.
    """
    gamma = _fraction(gamma, "gamma", low_open=True, high_open=True)
    if gamma == 0.5:
        raise ValstatError("gamma must differ from 0.5 (no improvement cannot be detected)")
    alpha = check_level(alpha, "alpha")
    beta = check_level(beta, "beta")
    g = max(gamma, 1 - gamma)  # symmetric: losses in place of wins
    for start in range(1, max_runs + 1, 256):
        N = np.arange(start, min(max_runs, start + 255) + 1)[:, None]
        k = np.arange(int(N[-1, 0]) + 1)[None, :]
        valid = k <= N
        low = sps.beta.ppf(alpha / 2, np.where(valid & (k > 0), k, 1), np.maximum(N - k + 1, 1))
        excludes = valid & (k > 0) & (low > 0.5)
        power = np.sum(np.where(excludes, sps.binom.pmf(k, N, g), 0.0), axis=1)
        if np.any(power >= 1 - beta):
            return int(N[np.argmax(power >= 1 - beta), 0])
    raise ValstatError(f"no number of runs up to {max_runs} reaches power {1 - beta:g}")


def noether_runs(gamma: float = 0.75, alpha: float = 0.05, beta: float = 0.05) -> int:
    """Noether's (1987) runs for P(A > B) = gamma, two independent samples, one-sided alpha.

    N = ceil((z_{1-alpha} + z_{1-beta})² / (6 (gamma - ½)²)); 29 at the defaults (Bouthillier
    et al. 2021). Not valstat's paired procedure: see runs_needed.
    """
    gamma = _fraction(gamma, "gamma", low_open=True, high_open=True)
    if gamma == 0.5:
        raise ValstatError("gamma must differ from 0.5 (no improvement cannot be detected)")
    alpha = check_level(alpha, "alpha")
    beta = check_level(beta, "beta")
    z = sps.norm.ppf(1 - alpha) + sps.norm.ppf(1 - beta)
    return int(math.ceil(z**2 / (6 * (gamma - 0.5) ** 2) - 1e-12))


def mcnemar_power(n: int, lost: float, gained: float, alpha: float = 0.05) -> float:
    """Exact power of valstat's two-sided McNemar test of one move between two epochs on n images.

    Each image independently goes right -> wrong with probability `lost` and wrong -> right
    with probability `gained` (lost + gained <= 1); power = P(p < alpha), summing the
    trinomial probabilities of every (images lost b, images gained c), p =
    paired.mcnemar_midp_p(b, c) (the per-move test).
    """
    n = check_positive_int(n, "n")
    if not (0 <= lost and 0 <= gained and lost + gained <= 1):
        raise ValstatError(f"lost and gained must be rates with lost + gained <= 1, got {lost!r}, {gained!r}")
    b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    ok = b + c <= n
    log_p = (sps.binom.logpmf(b, n, lost) + sps.binom.logpmf(c, n - np.minimum(b, n),
                                                              gained / (1 - lost) if lost < 1 else 0.0))
    reject = ok & (mcnemar_midp_p(b, c) < alpha)
    return float(np.sum(np.exp(log_p[reject])))


def detectable_drop(n: int, alpha: float = 0.05, power: float = 0.8, p: float | None = None,
                    churn: float | None = None) -> int | None:
    """Smallest drop in images (of n) the test valstat applies detects with `power`, or None.

    With `churn` (per-image predictions, mid-p McNemar): between the two epochs each image
    flips right -> wrong at rate churn + j/n and wrong -> right at rate churn (the chance
    flips both ways plus j images truly lost); power by mcnemar_power. Without it (Fisher's
    exact test of two counts), accuracy falls from `p` to p - j/n; power by fisher_power.
    Returns the smallest whole j >= 1 whose power reaches `power`: drops under j images are
    detected less often than that ("cannot be told from noise").
    """
    n = check_positive_int(n, "n")
    alpha = check_level(alpha, "alpha")
    power = check_level(power, "power")
    if churn is not None:
        churn = _fraction(churn, "churn")
        steps = range(1, int(np.floor((1 - 2 * churn) * n + 1e-9)) + 1)
        reach = (mcnemar_power(n, churn + j / n, churn, alpha) for j in steps)
    else:
        p = _fraction(p, "p")
        steps = range(1, int(np.floor(p * n + 1e-9)) + 1)
        reach = (fisher_power(n, p, p - j / n, alpha) for j in steps)
    return next((j for j, got in zip(steps, reach) if got >= power), None)


def move_detectability(n: int, alpha: float = 0.05, power: float = 0.8, lost=None, gained=None,
                       accuracy=None) -> dict:
    """What a "within noise" verdict on epoch-to-epoch moves of n images could have detected.

    With per-image counts lost, gained (shape (moves,), images per consecutive epoch pair,
    unchanged pairs included): the mid-p McNemar test at the chance churn = mean of
    (lost + gained) / 2 / n over the moves within noise (mid-p McNemar p >= alpha; all moves
    if none is). Without a real change lost and gained have the same mean, which their
    average estimates without bias, where min(lost, gained) runs low (2.0 images each way
    for a true 3, so the detectable drop had about 0.75 power, not 0.8); leaving out the
    moves beyond noise keeps the learning epochs' real gains out of the chance churn. Otherwise Fisher's test at p = mean of `accuracy` (shape (epochs,),
    fractions). Returns dict: test ("mcnemar" | "fisher"), churn or p, images
    (detectable_drop), power, n.
    """
    if lost is not None:
        lost, gained = np.asarray(lost, dtype=float), np.asarray(gained, dtype=float)
        within = mcnemar_midp_p(lost, gained) >= alpha
        if within.any():
            lost, gained = lost[within], gained[within]
        churn = float(np.mean(lost + gained) / 2 / n)
        return {"test": "mcnemar", "churn": churn, "images": detectable_drop(n, alpha, power, churn=churn),
                "power": power, "n": n}
    p = float(np.mean(accuracy))
    return {"test": "fisher", "p": p, "images": detectable_drop(n, alpha, power, p=p), "power": power, "n": n}
