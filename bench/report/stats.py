"""Small, dependency-free statistics for the report: Student-t and binomial (Wilson) intervals,
Welch and Newcombe gaps, Pareto sets.

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


def _sample_var(xs: list[float], mean: float) -> float:
    """Sample variance (n - 1); exactly 0 for identical values (no rounding residue)."""
    if max(xs) == min(xs):
        return 0.0
    return sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)


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
    std = math.sqrt(_sample_var(xs, mean))
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

    If both samples have zero spread the bounds are NaN too: a handful of identical seeds says
    nothing about how far the next seed could fall, so it is no evidence that the gap is real
    (a zero-width interval would make every nonzero gap "significant"). Combine it with a
    measurement-noise interval such as :func:`newcombe_diff_ci` instead.
    """
    xa, xb = _clean(a), _clean(b)
    nan = float("nan")
    if not xa or not xb:
        return Difference(nan, nan, nan, nan)
    ma, mb = sum(xa) / len(xa), sum(xb) / len(xb)
    diff = ma - mb
    if len(xa) < 2 or len(xb) < 2:
        return Difference(diff, nan, nan, nan)
    va = _sample_var(xa, ma) / len(xa)  # squared standard errors
    vb = _sample_var(xb, mb) / len(xb)
    se2 = va + vb
    if se2 == 0.0:
        return Difference(diff, nan, nan, nan)
    df = se2 * se2 / (va * va / (len(xa) - 1) + vb * vb / (len(xb) - 1))
    half = t_quantile(0.5 + confidence / 2.0, df) * math.sqrt(se2)
    return Difference(diff, diff - half, diff + half, df)


def z_quantile(confidence: float) -> float:
    """The two-sided standard normal quantile z_{(1+c)/2} (1.959964 for c = 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return normal_quantile(0.5 + confidence / 2.0)


def _positive(n: float | None) -> bool:
    return n is not None and not math.isnan(float(n)) and float(n) > 0


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n`` (fractions, in [0, 1]).

    ``successes`` may be fractional (an accuracy times an image count that was rounded when
    written). Unlike the normal (Wald) interval it stays inside [0, 1] and does not collapse to
    zero width at 0 or n successes. Returns (NaN, NaN) when ``n`` is not a positive number.
    """
    nan = float("nan")
    if not _positive(n) or successes is None or math.isnan(float(successes)):
        return nan, nan
    if not 0.0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n = {n}], got {successes}")
    z = z_quantile(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_diff_ci(p1: float, n1: float, p2: float, n2: float,
                     confidence: float = 0.95) -> Difference:
    """Newcombe's hybrid score interval (his method 10) for p1 - p2 of independent proportions.

    ``p1``/``p2`` are fractions measured over ``n1``/``n2`` trials. The bounds combine the two
    Wilson intervals: lo = d - sqrt((p1 - l1)^2 + (u2 - p2)^2), hi = d + sqrt((u1 - p1)^2 +
    (p2 - l2)^2). ``df`` is NaN (there are no degrees of freedom); NaN bounds when a count is
    missing.
    """
    nan = float("nan")
    diff = p1 - p2
    l1, u1 = wilson_interval(p1 * n1, n1, confidence) if _positive(n1) else (nan, nan)
    l2, u2 = wilson_interval(p2 * n2, n2, confidence) if _positive(n2) else (nan, nan)
    if math.isnan(l1) or math.isnan(l2):
        return Difference(diff, nan, nan, nan)
    lo = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Difference(diff, lo, hi, nan)


def _width(lo: float, hi: float) -> float:
    return math.nan if math.isnan(lo) or math.isnan(hi) else hi - lo


def wider(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """The wider of two (lo, hi) intervals; a NaN interval loses to a defined one."""
    wa, wb = _width(*a), _width(*b)
    if math.isnan(wa):
        return b
    if math.isnan(wb):
        return a
    return a if wa >= wb else b


@dataclass(frozen=True)
class AccuracyCI:
    """An accuracy (fraction) over seeds with the interval the report shows and compares.

    ``method`` names where (lo, hi) came from: ``"wilson"`` (one seed: binomial over the test
    images), ``"t"`` (Student t over seeds) or ``"wilson>t"`` (seeds, but the binomial interval
    at the mean was wider, e.g. identical seeds). ``images`` is the test-set size per seed.
    """

    mean: float
    std: float
    n: int
    lo: float
    hi: float
    method: str
    images: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2.0


def accuracy_ci(values: Sequence[float], images: float,
                confidence: float = 0.95) -> AccuracyCI:
    """Interval for the mean accuracy of ``values`` (fractions), each over ``images`` test images.

    One seed: the Wilson interval. Two or more: the Student-t interval over seeds, or the Wilson
    interval at the mean accuracy if that is wider. Every seed is scored on the *same* test
    images, so the binomial part uses ``images`` once, not ``images`` times the seeds: more
    seeds do not shrink the test set's own sampling noise. NaN bounds when ``images`` is
    unknown and there are fewer than two seeds.
    """
    ci = mean_ci(values, confidence)
    nan = float("nan")
    if ci.n == 0:
        return AccuracyCI(nan, nan, 0, nan, nan, "", images)
    binom = wilson_interval(ci.mean * images, images, confidence)
    if ci.n == 1:
        method = "" if math.isnan(binom[0]) else "wilson"
        return AccuracyCI(ci.mean, ci.std, 1, *binom, method, images)
    lo, hi = wider((ci.lo, ci.hi), binom)
    method = "t" if (lo, hi) == (ci.lo, ci.hi) else "wilson>t"
    # The t interval is symmetric and knows nothing of [0, 1]: three widely spread seeds near
    # chance (vgg16 resize32 on the cpu profile: 10.1, 24.5, 22.3%) reached below 0%.
    return AccuracyCI(ci.mean, ci.std, ci.n, max(0.0, lo), min(1.0, hi), method, images)


def accuracy_diff_ci(a: Sequence[float], a_images: float, b: Sequence[float], b_images: float,
                     confidence: float = 0.95) -> Difference:
    """Interval for mean(a) - mean(b) of accuracies (fractions): the wider of Welch and Newcombe.

    Welch covers seed-to-seed noise (defined only with >= 2 seeds each and some spread);
    Newcombe's interval at the two means covers the test set's binomial noise, so two groups of
    identical seeds are not "significantly" apart just because their spread is zero.
    """
    welch = welch_diff_ci(a, b, confidence)
    if math.isnan(welch.diff):
        return welch
    binom = newcombe_diff_ci(welch.diff + _mean(b), a_images, _mean(b), b_images, confidence)
    lo, hi = wider((welch.lo, welch.hi), (binom.lo, binom.hi))
    df = welch.df if (lo, hi) == (welch.lo, welch.hi) else float("nan")
    return Difference(welch.diff, lo, hi, df)


def _mean(values: Sequence[float]) -> float:
    xs = _clean(values)
    return sum(xs) / len(xs) if xs else float("nan")


def separated(best: tuple[float, float], others: Sequence[tuple[float, float]],
              higher_is_better: bool = True) -> bool:
    """True when interval ``best`` lies strictly beyond every interval in ``others``.

    Higher is better: best's lower bound exceeds each other's upper bound (lower is better: the
    mirror). Any NaN bound means the data cannot show a separation, so the answer is False.
    No others: vacuously True.
    """
    lo, hi = best
    if math.isnan(lo) or math.isnan(hi):
        return False
    for olo, ohi in others:
        if math.isnan(olo) or math.isnan(ohi):
            return False
        if (higher_is_better and not lo > ohi) or (not higher_is_better and not hi < olo):
            return False
    return True


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


# ---------------------------------------------------------------------------------------------
# Picking a winner among named candidates (used by bench.report.advise)


@dataclass(frozen=True)
class Pick:
    """Who wins a comparison of intervals.

    ``top`` has the best point value; ``winner`` is ``top`` only when its interval lies strictly
    beyond every other candidate's (see :func:`separated`), else None. ``tied`` is ``top`` and
    every candidate whose interval cannot be told from top's, best value first; a winner is tied
    with nobody (``tied == (winner,)``). No candidates: everything None/empty.
    """

    top: str | None
    winner: str | None
    tied: tuple[str, ...]


def pick_best(candidates: dict[str, tuple[float, float, float]],
              higher_is_better: bool = True) -> Pick:
    """Compare ``{name: (value, lo, hi)}`` by their intervals; NaN values are left out.

    A lone candidate is the winner trivially. A NaN bound makes an interval unable to separate
    from anything, so such a top candidate is tied with every other.
    """
    valid = {k: v for k, v in candidates.items() if not math.isnan(float(v[0]))}
    if not valid:
        return Pick(None, None, ())
    ordered = sorted(valid, key=lambda k: valid[k][0], reverse=higher_is_better)
    top = ordered[0]
    interval = (float(valid[top][1]), float(valid[top][2]))
    others = ordered[1:]
    if separated(interval, [(valid[k][1], valid[k][2]) for k in others], higher_is_better):
        return Pick(top, top, (top,))
    tied = [top] + [k for k in others
                    if not separated(interval, [(valid[k][1], valid[k][2])], higher_is_better)]
    return Pick(top, None, tuple(tied))


def ratio_interval(num: tuple[float, float, float],
                   den: tuple[float, float, float]) -> tuple[float, float, float]:
    """(value, lo, hi) of num / den for positive quantities by interval arithmetic:
    (v_n / v_d, lo_n / hi_d, hi_n / lo_d). NaN where a bound is missing or den is not > 0."""
    nan = float("nan")
    (vn, ln, hn), (vd, ld, hd) = num, den
    if any(math.isnan(float(x)) for x in (vn, vd)) or vd <= 0:
        return nan, nan, nan
    value = vn / vd
    if any(math.isnan(float(x)) for x in (ln, hn, ld, hd)) or ld <= 0:
        return value, nan, nan
    return value, ln / hd, hn / ld
