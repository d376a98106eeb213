"""How many images and runs: interval width, detectable differences, runs for P(A > B)."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower

from valstat.errors import UserError
from valstat.stats._checks import as_number, check_level, check_positive_int
from valstat.stats.intervals import binomial_interval


def _fraction(value, name, low_open=False, high_open=False):
    x = as_number(value, f"{name} must be a number, got {value!r}")
    too_low = x <= 0 if low_open else x < 0
    too_high = x >= 1 if high_open else x > 1
    if not math.isfinite(x) or too_low or too_high:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise UserError(f"{name} must be in {lo}0, 1{hi}, got {value!r}")
    return x


def val_size_for_halfwidth(p, halfwidth, level: float = 0.95, method: str = "wilson", max_n: int = 100_000) -> int:
    """Smallest validation size n whose interval at k = round(p·n) has half-width <= halfwidth.

    p: expected accuracy (fraction); halfwidth: target half-width (fraction, e.g. 0.05 for
    ±5 points). n is searched upward in vectorised blocks (1..1024, then 8x larger); UserError if none fits.
    The half-width is (high - low)/2 of binomial_interval(k, n, level, method).
    """
    p = _fraction(p, "p")
    halfwidth = _fraction(halfwidth, "halfwidth", low_open=True)
    max_n = check_positive_int(max_n, "max_n")
    start, stop = 1, min(max_n, 1024)
    while start <= max_n:
        n = np.arange(start, stop + 1)
        low, high = binomial_interval(np.floor(p * n + 0.5), n, level, method)
        ok = (high - low) / 2 <= halfwidth
        if ok.any():
            return int(n[np.argmax(ok)])
        start, stop = stop + 1, min(max_n, stop * 8)
    raise UserError(f"no validation size up to {max_n} images reaches a half-width of {halfwidth:g}")


def minimum_detectable_difference(n, p, alpha: float = 0.05, power: float = 0.8) -> dict:
    """Smallest accuracy difference a two-sided test of two independent proportions detects.

    n: images per group (e.g. the validation size, both models on n images each, treated
    as independent: conservative for paired images); p: baseline accuracy (fraction).
    Normal approximation on Cohen's h: statsmodels NormalIndPower solves for h at (n, alpha,
    power, ratio 1); h = 2·asin(sqrt(p2)) - 2·asin(sqrt(p)) is then inverted both ways.
    Returns dict: h, increase (p2 - p > 0; None when p2 would pass 1), decrease
    (p2 - p < 0; None when p2 would pass 0), difference (the larger magnitude, i.e.
    detectable in either direction), images (difference·n), n, p, alpha, power.
    """
    n = check_positive_int(n, "n")
    if n < 2:
        raise UserError("n must be at least 2 images per group")
    p = _fraction(p, "p")
    alpha = check_level(alpha, "alpha")
    power = check_level(power, "power")
    h = float(NormalIndPower().solve_power(effect_size=None, nobs1=n, alpha=alpha, power=power, ratio=1.0))
    phi = 2 * math.asin(math.sqrt(p))
    up = math.sin((phi + h) / 2) ** 2 - p if phi + h <= math.pi else None
    down = math.sin((phi - h) / 2) ** 2 - p if phi - h >= 0 else None
    sizes = [abs(d) for d in (up, down) if d is not None]
    difference = max(sizes) if sizes else None
    return {
        "h": h, "increase": up, "decrease": down, "difference": difference,
        "images": None if difference is None else difference * n,
        "n": n, "p": p, "alpha": alpha, "power": power,
    }


def runs_needed(gamma: float = 0.75, alpha: float = 0.05, beta: float = 0.05) -> int:
    """Paired runs needed to detect P(A > B) = gamma (Noether 1987; Bouthillier et al. 2021).

    N = ceil((z_{1-alpha} + z_{1-beta})² / (6 (gamma - ½)²)); 29 at the defaults.
    """
    gamma = _fraction(gamma, "gamma", low_open=True, high_open=True)
    if gamma == 0.5:
        raise UserError("gamma must differ from 0.5 (no improvement cannot be detected)")
    alpha = check_level(alpha, "alpha")
    beta = check_level(beta, "beta")
    z = sps.norm.ppf(1 - alpha) + sps.norm.ppf(1 - beta)
    return int(math.ceil(z**2 / (6 * (gamma - 0.5) ** 2) - 1e-12))
