"""Small, dependency-free statistics for the report: Student-t intervals, Welch gaps, Pareto sets.

scipy is not a dependency, so the t quantile is computed here from the regularized incomplete
beta function (continued fraction) and a bisection; it matches published tables to ~1e-9 and
handles the fractional degrees of freedom of Welch's test, which a lookup table cannot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

_EPS = 1e-15
_TINY = 1e-300


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b), evaluated with the modified Lentz method."""
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 1000):
        # Even step: m (b - m) x / ((a + 2m - 1)(a + 2m)).
        num = m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + num / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        # Odd step: -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
        num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + num / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPS:
            break
    return h


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the CDF of a Beta(a, b) variable at x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (a * math.log(x) + b * math.log1p(-x)
                 - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)))
    # The fraction converges fast only for x < (a + 1) / (a + b + 2); use symmetry beyond.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (> 0, may be fractional) degrees of freedom."""
    if df <= 0 or math.isnan(df):
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    tail = 0.5 * regularized_beta(df / (df + t * t), df / 2.0, 0.5)
    return 1.0 - tail if t >= 0 else tail


def normal_quantile(p: float) -> float:
    """Standard normal quantile by bisection on erf (only used for huge df)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * (1.0 + math.erf(mid / math.sqrt(2.0))) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def t_quantile(p: float, df: float) -> float:
    """Inverse of :func:`t_cdf`: the t with P(T <= t) = p, for 0 < p < 1."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if df > 1e7:  # indistinguishable from the normal, and the beta fraction gets slow
        return normal_quantile(p)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class MeanCI:
    """Mean of n values with sample std and a two-sided Student-t interval (NaN where n < 2)."""

    mean: float
    std: float
    n: int
    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2.0


def _clean(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> MeanCI:
    """Mean ± t_{(1+c)/2, n-1} · s / sqrt(n). NaNs are ignored; n counts the rest."""
    xs = _clean(values)
    n = len(xs)
    nan = float("nan")
    if n == 0:
        return MeanCI(nan, nan, 0, nan, nan)
    mean = sum(xs) / n
    if n < 2:
        return MeanCI(mean, nan, 1, nan, nan)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
    return MeanCI(mean, std, n, mean - half, mean + half)


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) with a Welch interval; ``df`` is the Welch–Satterthwaite value."""

    diff: float
    lo: float
    hi: float
    df: float

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0, i.e. the gap is not explained by seed noise."""
        return not (math.isnan(self.lo) or self.lo <= 0.0 <= self.hi)


def welch_diff_ci(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference:
    """Welch's interval for mean(a) - mean(b); NaN bounds unless both have n >= 2.

    If both samples have zero spread the interval collapses onto the difference (df = inf):
    identical seeds are as certain as the data can say.
    """
    xa, xb = _clean(a), _clean(b)
    nan = float("nan")
    if not xa or not xb:
        return Difference(nan, nan, nan, nan)
    ma, mb = sum(xa) / len(xa), sum(xb) / len(xb)
    diff = ma - mb
    if len(xa) < 2 or len(xb) < 2:
        return Difference(diff, nan, nan, nan)
    va = sum((x - ma) ** 2 for x in xa) / (len(xa) - 1) / len(xa)  # squared standard errors
    vb = sum((x - mb) ** 2 for x in xb) / (len(xb) - 1) / len(xb)
    se2 = va + vb
    if se2 == 0.0:
        return Difference(diff, diff, diff, math.inf)
    df = se2 * se2 / (va * va / (len(xa) - 1) + vb * vb / (len(xb) - 1))
    half = t_quantile(0.5 + confidence / 2.0, df) * math.sqrt(se2)
    return Difference(diff, diff - half, diff + half, df)


def pareto_mask(xs: Sequence[float], ys: Sequence[float]) -> list[bool]:
    """True for points no other point dominates when maximizing both x and y.

    A point is dominated if another is >= on both axes and > on at least one. Duplicates of a
    frontier point are all kept. NaN points are never on the frontier.
    """
    pts = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]
    mask = []
    for i, (x, y) in enumerate(pts):
        if math.isnan(x) or math.isnan(y):
            mask.append(False)
            continue
        dominated = any(
            j != i and ox >= x and oy >= y and (ox > x or oy > y)
            for j, (ox, oy) in enumerate(pts) if not (math.isnan(ox) or math.isnan(oy)))
        mask.append(not dominated)
    return mask
