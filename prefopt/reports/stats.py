"""Numbers with their noise, and whether beta moved them beyond it.

An Estimate is a value with its standard error and a 95% interval:
  - a rate over prompts or pairs of one run (pass rate, reward accuracy): the Wilson score interval from the count;
  - a mean over answers or pairs of one run (KL): +- 1.96 standard errors;
  - a mean over the seeds of one setting: the standard error over seeds, and Student's t interval with n - 1
    degrees of freedom.

`beta_effect` tests whether a metric differs across betas beyond that noise (docs/sweeps.md#reading-a-sweep): a
trend test on log(beta) (weighted least squares, each beta weighted by 1 / its variance) and a test that all betas
are equal (chi-square with one run per beta, one-way ANOVA with seeds), each at the 1% level.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Each test at 1%: a summary holds a dozen of them, and at 5% one in two summaries would call some noise real.
ALPHA = 0.01
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


@dataclass(frozen=True)
class Estimate:
    """A value with its noise. `se`: its standard error; (`low`, `high`): a 95% interval; `n`: the units behind it
    (prompts, pairs or answers of one run; the runs of a mean over seeds); `over`: what those units are; `rate`: a
    proportion in [0, 1]. Without a noise estimate se, low and high are None."""

    value: float | None
    se: float | None = None
    low: float | None = None
    high: float | None = None
    n: int | None = None
    over: str = ""
    rate: bool = False

    @property
    def half_width(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2


def finite_number(value) -> float | None:
    """`value` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion: good at 0 and 1 and for small n, where p +- z*se is not."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # The interval holds p exactly; at p = 0 or 1 the rounding of centre - half would leave it a hair outside.
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def rate(value, n, over: str) -> Estimate:
    """A proportion of `n` prompts or pairs (the count is value * n); without n, the value alone."""
    p, n = finite_number(value), n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None
    if p is None or n is None:
        return Estimate(p, rate=True)
    low, high = wilson(p * n, n)
    return Estimate(p, math.sqrt(p * (1 - p) / n), low, high, n, over, rate=True)


def mean(value, se, n=None, over: str = "") -> Estimate:
    """A mean with its standard error (over answers or pairs): the interval is +- 1.96 se."""
    value, se = finite_number(value), finite_number(se)
    if value is None or se is None:
        return Estimate(value, n=n, over=over)
    return Estimate(value, se, value - Z95 * se, value + Z95 * se, n, over)


def over_seeds(values: Sequence[float | None], rate: bool = False) -> Estimate:
    """Mean of the runs' values, the standard error over them and Student's t 95% interval; one run: no noise."""
    numbers = [v for v in map(finite_number, values) if v is not None]
    if not numbers:
        return Estimate(None, rate=rate)
    centre = statistics.fmean(numbers)
    if len(numbers) < 2:
        return Estimate(centre, n=1, over="seeds", rate=rate)
    se = statistics.stdev(numbers) / math.sqrt(len(numbers))
    half = _t_quantile(len(numbers) - 1) * se
    low, high = centre - half, centre + half
    if rate:
        low, high = max(0.0, low), min(1.0, high)
    return Estimate(centre, se, low, high, len(numbers), "seeds", rate)


def combine(runs: Sequence[Estimate]) -> Estimate:
    """A setting's estimate: its one run's own, or the mean over its runs (seeds) with their spread."""
    runs = [r for r in runs if r.value is not None]
    if len(runs) == 1:
        return runs[0]
    return over_seeds([r.value for r in runs], rate=any(r.rate for r in runs))


@dataclass(frozen=True)
class Effect:
    """What beta did to a metric. verdict: rises, falls (a trend on log beta), differs (no steady trend, but not all
    equal), none (no difference beyond noise), unknown (no noise estimate, or fewer than two betas).
    values: (beta, estimate) per beta, in beta order; noise: prompts, pairs, answers or seeds."""

    verdict: str
    values: tuple[tuple[float, Estimate], ...]
    noise: str = ""
    p_trend: float | None = None
    p_equal: float | None = None

    @property
    def low(self) -> float:
        return min(e.value for _, e in self.values)

    @property
    def high(self) -> float:
        return max(e.value for _, e in self.values)

    @property
    def half_width(self) -> float | None:
        """The mean half-width of the betas' 95% intervals: the noise a reader should hold each value to."""
        widths = [e.half_width for _, e in self.values if e.half_width is not None]
        return statistics.fmean(widths) if widths else None


def beta_effect(runs_by_beta: Sequence[tuple[float, Sequence[Estimate]]], alpha: float = ALPHA) -> Effect:
    """Whether a metric differs across betas beyond its noise, from each beta's runs.

    With several runs for some beta (seeds), the noise is the spread over seeds, pooled over betas (N - k degrees
    of freedom): a t test of the slope on log(beta) and one-way ANOVA's F test. With one run per beta, it is each
    run's own standard error over prompts or pairs; for rates the pooled rate's (the null's) binomial variance, as
    in the chi-square test of equal proportions: a z test of the slope (Cochran-Armitage for rates) and a
    chi-square test that every beta is equal. A slope below `alpha` gives rises or falls; else equality rejected
    below `alpha` gives differs; else none."""
    groups = [(beta, [r for r in runs if r.value is not None]) for beta, runs in runs_by_beta]
    groups = sorted((beta, runs) for beta, runs in groups if runs and beta is not None)
    values = tuple((beta, combine(runs)) for beta, runs in groups)
    k = len(groups)
    if k < 2:
        return Effect("unknown", values)
    means = [e.value for _, e in values]
    sizes = [len(runs) for _, runs in groups]
    if max(sizes) > 1:
        dof = sum(sizes) - k
        if dof < 1:
            return Effect("unknown", values)
        pooled = sum((r.value - m) ** 2 for (_, runs), m in zip(groups, means) for r in runs) / dof
        variances, noise = [pooled / n for n in sizes], "seeds"
    elif all(runs[0].rate and runs[0].n for _, runs in groups):
        dof = None
        counts = [runs[0].n for _, runs in groups]
        p = sum(m * n for m, n in zip(means, counts)) / sum(counts)
        variances, noise = [p * (1 - p) / n for n in counts], groups[0][1][0].over
    elif all(runs[0].se is not None for _, runs in groups):
        dof = None
        variances, noise = [runs[0].se ** 2 for _, runs in groups], groups[0][1][0].over
    else:
        return Effect("unknown", values)

    if max(means) == min(means):
        return Effect("none", values, noise, 1.0, 1.0)
    if min(variances) <= 0:  # no spread at all, yet the betas differ: beyond any noise there is
        slope = _slope([math.log(b) if b > 0 else b for b, _ in values], means, [1.0] * k)[0]
        return Effect("rises" if slope > 0 else "falls", values, noise, 0.0, 0.0)
    weights = [1 / v for v in variances]
    xs = [math.log(b) for b, _ in values] if all(b > 0 for b, _ in values) else [b for b, _ in values]
    slope, slope_se = _slope(xs, means, weights)
    centre = sum(w * m for w, m in zip(weights, means)) / sum(weights)
    q = sum(w * (m - centre) ** 2 for w, m in zip(weights, means))
    p_trend = _two_sided_p(slope / slope_se, dof)
    p_equal = _chi2_p(q, k - 1) if dof is None else _f_p(q / (k - 1), k - 1, dof)
    if p_trend < alpha:
        verdict = "rises" if slope > 0 else "falls"
    elif p_equal < alpha:
        verdict = "differs"
    else:
        verdict = "none"
    return Effect(verdict, values, noise, p_trend, p_equal)


def _slope(xs, ys, weights) -> tuple[float, float]:
    """Weighted least-squares slope of ys on xs and its standard error (weights are inverse variances)."""
    total = sum(weights)
    x_bar = sum(w * x for w, x in zip(weights, xs)) / total
    y_bar = sum(w * y for w, y in zip(weights, ys)) / total
    sxx = sum(w * (x - x_bar) ** 2 for w, x in zip(weights, xs))
    sxy = sum(w * (x - x_bar) * (y - y_bar) for w, x, y in zip(weights, xs, ys))
    return sxy / sxx, 1 / math.sqrt(sxx)


def reading(name: str, effect: Effect) -> str:
    """One clause of the summary's reading line, e.g. `pass rate: no difference beyond noise, 0.477-0.516 +- 0.09`."""
    if not effect.values:
        return f"{name}: no completed run"
    first, last = effect.values[0][1], effect.values[-1][1]
    if effect.verdict in ("rises", "falls"):
        return f"{name}: {effect.verdict} with beta, {_number(first.value)} -> {_number(last.value)}"
    if effect.verdict == "differs":
        top = max(effect.values, key=lambda item: item[1].value)
        return (
            f"{name}: differs across betas without a steady trend, {_number(effect.low)}-{_number(effect.high)} "
            f"(highest at beta {top[0]:g})"
        )
    low, high = _number(effect.low), _number(effect.high)
    spread = low if low == high else f"{low}-{high}"
    if effect.verdict == "none":
        half = effect.half_width
        return f"{name}: no difference beyond noise, {spread}" + ("" if half is None else f" +/- {_number(half)}")
    return f"{name}: {spread}, no noise estimate" + (" (one run per beta)" if len(effect.values) > 1 else "")


def _number(x: float) -> str:
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}" if abs(x) >= 1 else f"{x:.3f}" if x else "0"


# ------------------------------------------------------------------------------ distributions (scipy's)


def _t_quantile(dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, dof))


def _two_sided_p(statistic: float, dof: int | None) -> float:
    from scipy import stats

    tail = stats.norm.sf(abs(statistic)) if dof is None else stats.t.sf(abs(statistic), dof)
    return float(2 * tail)


def _chi2_p(q: float, dof: int) -> float:
    from scipy import stats

    return float(stats.chi2.sf(q, dof))


def _f_p(f: float, dof_between: int, dof_within: int) -> float:
    from scipy import stats

    return float(stats.f.sf(f, dof_between, dof_within))
