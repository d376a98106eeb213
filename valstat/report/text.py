"""The report's words: strings per language (en.toml, zh.toml beside this file) and the
sentences built from an Analysis.

All human text lives in the TOML files; this module only picks a string and fills in numbers.
Values are plain text here: the HTML template escapes them (jinja2 autoescape) and the LaTeX
writer escapes them with `latex.escape`. Citations are written `[@key]` or `[@a; @b]` and turned
into "(Author Year)" or \\cite{...} by the writers (valstat/report/bib.py).
"""

from __future__ import annotations

import functools
import math
import tomllib
from pathlib import Path

from valstat.errors import ValstatError

HERE = Path(__file__).resolve().parent
LANGS = ("en", "zh")


class Strings:
    """One language's strings: S["section.key"] or S("section.key", **values)."""

    def __init__(self, lang: str):
        if lang not in LANGS:
            raise ValstatError(f"unknown language {lang!r}; choose one of: {', '.join(LANGS)}")
        self.lang = lang
        self.data = _load(lang)

    def __getitem__(self, key: str):
        node = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"missing string {key!r} for language {self.lang!r}")
            node = node[part]
        return node

    def __call__(self, key: str, **values) -> str:
        return self[key].format(**values)

    def section(self, name: str) -> dict:
        return dict(self[name])

    def count(self, unit: str, n: int) -> str:
        """'1 run' / '4 runs' from units.<unit>_one / _many (one form in Chinese)."""
        key = f"units.{unit}_one" if abs(int(n)) == 1 else f"units.{unit}_many"
        return self(key, n=int(n))

    def ordinal(self, n: int) -> str:
        """'1st', '22nd', '72nd', '11th' (Chinese: the number alone; its strings say 第 … 百分位)."""
        n = int(n)
        suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        return self(f"units.ordinal_{suffix}", n=n)

    def images(self, count: int) -> str:
        """'1 image' / '4 images'."""
        return self.count("images", count)


@functools.lru_cache(maxsize=None)
def _load(lang: str) -> dict:
    with open(HERE / f"{lang}.toml", "rb") as handle:
        return tomllib.load(handle)


# --------------------------------------------------------------------------- number formats

def finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def pct(x, digits: int = 1, clip: bool = True) -> str:
    """Accuracy fraction -> '80.0%' (clipped to [0, 100%]: t intervals can pass the bounds)."""
    if not finite(x):
        return "–"
    x = float(x)
    if clip:
        x = min(max(x, 0.0), 1.0)
    return f"{100 * x:.{digits}f}%"


def pts(x, digits: int = 1, signed: bool = False) -> str:
    """Fraction -> accuracy points, '3.3' (signed: '+3.3' / '−3.3')."""
    if not finite(x):
        return "–"
    value = 100 * float(x)
    text = f"{abs(value):.{digits}f}"
    if signed:   # a value that rounds to zero reads +0.0, not −0.0
        return ("+" if value >= 0 or float(text) == 0 else "−") + text
    return ("−" if value < 0 and float(text) != 0 else "") + text


def pval(p) -> str:
    """p-value after "p" in prose: '< 0.001', '= 0.0034', '= 0.054', '= 0.42' (two significant
    digits below 0.1, so a p near the 5% threshold is never rounded onto it)."""
    if not finite(p):
        return "–"
    p = float(p)
    return "< 0.001" if p < 0.001 else f"= {p:.2g}" if p < 0.1 else f"= {p:.2f}"


def p_short(p) -> str:
    """p-value inline in terminal text, pval's digits: 'p<0.001', 'p=0.031', 'p=0.42'."""
    return "p=–" if not finite(p) else "p" + pval(p).replace(" ", "")


def short(x, digits: int = 2) -> str:
    """A number with `digits` significant digits, Python's g format: 0.001, 1e-05, 0.31."""
    return f"{float(x):.{digits}g}" if finite(x) else "–"


def dof(df) -> str:
    """Degrees of freedom: '12' when whole, '12.3' when Satterthwaite's, '∞' when infinite."""
    if df is None or (isinstance(df, float) and math.isnan(df)):
        return "–"
    df = float(df)
    if math.isinf(df):
        return "∞"
    text = f"{df:.1f}"
    return text[:-2] if text.endswith(".0") else text


def num(x, digits: int = 2) -> str:
    if not finite(x):
        return "–"
    return f"{float(x):.{digits}f}".replace("-", "−")


def unequal_val_sizes(comp, val_sizes: dict):
    """(n_a, n_b) when a comparison's pairs scored different images and its arms scored
    different numbers of them (P(A > B) then differs from ½ at equal accuracy), else None."""
    n_a, n_b = val_sizes.get(comp.a), val_sizes.get(comp.b)
    if comp.pairs_on_different_images and n_a and n_b and n_a != n_b:
        return n_a, n_b
    return None


def ratio_end(x, digits: int = 2) -> str:
    """An end of a ratio's interval: num, or '∞' where the interval is open above."""
    return "∞" if x is not None and math.isinf(float(x)) and float(x) > 0 else num(x, digits)


def sig(x, digits: int = 2) -> str:
    """A positive size with `digits` significant digits: 0.031, 0.00012, 1.4."""
    if not finite(x):
        return "–"
    x = float(x)
    if x == 0:
        return "0"
    return f"{x:.{digits}g}" if abs(x) >= 1e-4 else f"{x:.{digits - 1}e}"


def rate(x) -> str:
    """Learning rate -> '1e-3', '5e-4', '1.5e-5'."""
    if not finite(x) or float(x) <= 0:
        return "0" if finite(x) else "–"
    mantissa, exponent = f"{float(x):.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def epoch(x) -> str:
    if not finite(x):
        return "–"
    value = float(x)
    return str(int(value)) if value == int(value) else f"{value:.1f}"
