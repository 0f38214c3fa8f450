"""bench.report.stats: binomial (Wilson, Newcombe) intervals and the combined accuracy intervals.

Known values are from Newcombe (1998), "Two-sided confidence intervals for the single
proportion" and "Interval estimation for the difference between independent proportions"
(Stat. Med. 17), and from the Wilson formula worked by hand. Accuracies are fractions.
"""

from __future__ import annotations

import math

import pytest

from bench.report import stats


@pytest.mark.parametrize(("successes", "n", "lo", "hi"), [
    (900, 1000, 0.879848, 0.917091),   # 90% of 1,000 test images: ±1.86 pp
    (9000, 10000, 0.893966, 0.905727),  # 90% of 10,000: ±0.59 pp
    (81, 263, 0.2553, 0.3662),        # Newcombe 1998, table I
    (0, 10, 0.0, 0.2775),             # no zero-width interval at 0 successes
    (10, 10, 0.7225, 1.0),
])
def test_wilson_interval_known_values(successes, n, lo, hi):
    got = stats.wilson_interval(successes, n)
    assert got == pytest.approx((lo, hi), abs=5e-5)


def test_wilson_interval_by_the_formula():
    z = 1.959963984540054
    n, p = 1000, 0.9
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert stats.wilson_interval(900, 1000) == pytest.approx((centre - half, centre + half))
    # A wider confidence gives a wider interval; no images gives no interval.
    lo99, hi99 = stats.wilson_interval(900, 1000, 0.99)
    assert lo99 < centre - half and hi99 > centre + half
    assert all(math.isnan(v) for v in stats.wilson_interval(0, 0))
    with pytest.raises(ValueError):
        stats.wilson_interval(11, 10)


@pytest.mark.parametrize(("a", "b", "lo", "hi"), [
    ((56, 70), (48, 80), 0.0524, 0.3339),  # Newcombe 1998 (difference), example (a), method 10
    ((9, 10), (3, 10), 0.1705, 0.8090),    # example (b)
])
def test_newcombe_known_values(a, b, lo, hi):
    d = stats.newcombe_diff_ci(a[0] / a[1], a[1], b[0] / b[1], b[1])
    assert (d.lo, d.hi) == pytest.approx((lo, hi), abs=5e-5)
    assert d.significant


def test_welch_zero_variance_is_not_evidence():
    # Three identical seeds each: the old code returned [diff, diff], "significant".
    d = stats.welch_diff_ci([0.95] * 3, [0.94] * 3)
    assert d.diff == pytest.approx(0.01)
    assert not d.significant


def test_accuracy_ci_one_seed_is_wilson():
    ci = stats.accuracy_ci([0.9], 1000)
    assert (ci.lo, ci.hi) == pytest.approx(stats.wilson_interval(900, 1000))
    assert ci.method == "wilson" and ci.n == 1
    assert math.isnan(stats.accuracy_ci([0.9], math.nan).lo)  # images unknown: no interval


def test_accuracy_ci_identical_seeds_fall_back_to_wilson():
    ci = stats.accuracy_ci([0.95, 0.95, 0.95], 1000)
    assert ci.std == 0
    # The same 1,000 images every seed: the binomial part does not pool to 3,000.
    assert (ci.lo, ci.hi) == pytest.approx(stats.wilson_interval(950, 1000))
    assert ci.method == "wilson>t"


def test_accuracy_ci_keeps_t_when_it_is_wider():
    values = [0.90, 0.95, 0.92]
    t = stats.mean_ci(values)
    ci = stats.accuracy_ci(values, 10000)
    assert (ci.lo, ci.hi) == pytest.approx((t.lo, t.hi))
    assert ci.method == "t"


def test_accuracy_diff_ci_zero_variance_uses_the_binomial_noise():
    d = stats.accuracy_diff_ci([0.95] * 3, 1000, [0.94] * 3, 1000)
    assert d.diff == pytest.approx(0.01)
    assert not d.significant  # 1 pp on 1,000 images is within the test set's noise
    assert (d.lo, d.hi) == pytest.approx(
        (stats.newcombe_diff_ci(0.95, 1000, 0.94, 1000).lo,
         stats.newcombe_diff_ci(0.95, 1000, 0.94, 1000).hi))
    far = stats.accuracy_diff_ci([0.99] * 2, 10000, [0.90] * 2, 10000)
    assert far.significant


def test_separated():
    assert stats.separated((0.9, 0.95), [(0.8, 0.89), (0.1, 0.2)])
    assert not stats.separated((0.9, 0.95), [(0.8, 0.9)])  # touching is not clearing
    assert not stats.separated((0.9, 0.95), [(math.nan, math.nan)])
    assert stats.separated((0.9, 0.95), [])
    assert stats.separated((1.0, 2.0), [(3.0, 4.0)], higher_is_better=False)


def test_accuracy_ci_stays_inside_zero_and_one():
    # Three seeds near chance spread widely: the symmetric t interval reached below 0%.
    low = stats.accuracy_ci([0.101, 0.245, 0.223], 1000)
    assert low.method == "t" and low.lo == 0.0 and low.hi < 1.0
    high = stats.accuracy_ci([0.999, 0.90, 0.998], 1000)
    assert high.hi == 1.0 and high.lo > 0.0
