"""prefopt/reports/stats.py: intervals and the beta reading on constructed inputs, with known answers."""

import math
import random

import pytest

from prefopt.reports.stats import Estimate, beta_effect, combine, mean, over_seeds, rate, reading, wilson

BETAS = [0.01, 0.05, 0.1, 0.5]


def test_wilson_interval_matches_known_values_and_stays_inside_zero_and_one():
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(1.959964**2 / (10 + 1.959964**2))  # z^2 / (n + z^2)
    assert wilson(10, 10)[1] == pytest.approx(1.0)
    for n in range(1, 257):  # the interval holds the rate itself at 0 and 1, where rounding could leave it outside
        assert wilson(0, n)[0] == 0.0 and wilson(n, n)[1] == 1.0


def test_a_rate_carries_its_count_and_a_mean_its_standard_error():
    estimate = rate(0.5, 128, "prompts")
    assert (estimate.n, estimate.over, estimate.rate) == (128, "prompts", True)
    assert estimate.se == pytest.approx(math.sqrt(0.25 / 128)) and estimate.half_width == pytest.approx(0.0854, 1e-3)
    assert rate(0.5, None, "prompts") == Estimate(0.5, rate=True)  # no count: no interval
    kl = mean(11.0, 0.5, 128, "answers")
    assert (kl.low, kl.high) == pytest.approx((11.0 - 0.98, 11.0 + 0.98), abs=1e-3)
    assert mean(11.0, None).se is None and mean(float("nan"), 0.5).value is None


def test_over_seeds_is_the_mean_its_standard_error_and_students_t_interval():
    estimate = over_seeds([1.0, 2.0, 3.0])
    assert (estimate.value, estimate.n, estimate.over) == (2.0, 3, "seeds")
    assert estimate.se == pytest.approx(1 / math.sqrt(3))
    assert estimate.half_width == pytest.approx(4.302653 / math.sqrt(3))  # t(2 dof) 97.5% quantile
    assert over_seeds([0.9, 1.0], rate=True).high == 1.0  # a rate's interval stops at 1
    single = over_seeds([0.5, None])
    assert single.value == 0.5 and single.se is None
    # A setting of one run keeps that run's own noise; of several, the noise over them.
    assert combine([rate(0.5, 128, "prompts")]).over == "prompts"
    assert combine([rate(0.5, 128, "prompts"), rate(0.6, 128, "prompts")]).over == "seeds"


def runs(values, n=128):
    return [(beta, [rate(v, n, "prompts")]) for beta, v in zip(BETAS, values)]


def test_equal_rates_are_no_difference():
    effect = beta_effect(runs([0.5, 0.5, 0.5, 0.5]))
    assert effect.verdict == "none" and effect.noise == "prompts"
    assert reading("pass rate", effect) == "pass rate: no difference beyond noise, 0.500 +/- 0.085"


def test_the_default_sweeps_pass_rates_are_within_noise():
    # The embedded default's beta sweep: 66, 64, 61 and 64 prompts of 128 passed.
    effect = beta_effect(runs([66 / 128, 64 / 128, 61 / 128, 64 / 128]))
    assert effect.verdict == "none" and effect.p_trend > 0.5 and effect.p_equal > 0.5
    assert reading("pass rate", effect) == "pass rate: no difference beyond noise, 0.477-0.516 +/- 0.085"


def test_clearly_separated_rates_are_a_trend_in_their_direction():
    rising = beta_effect(runs([0.1, 0.3, 0.5, 0.7]))
    assert rising.verdict == "rises" and rising.p_trend < 1e-6
    assert reading("pass rate", rising) == "pass rate: rises with beta, 0.100 -> 0.700"
    assert beta_effect(runs([0.7, 0.5, 0.3, 0.1])).verdict == "falls"


def test_a_peak_in_the_middle_differs_without_a_trend():
    effect = beta_effect(runs([0.2, 0.8, 0.8, 0.2]))
    assert effect.verdict == "differs" and effect.p_equal < 1e-6
    assert reading("pass rate", effect).startswith(
        "pass rate: differs across betas without a steady trend, 0.200-0.800"
    )


def test_means_with_standard_errors_use_them():
    close = [(b, [mean(11.0 + d, 0.5, 128, "answers")]) for b, d in zip(BETAS, (0.3, 0.4, 0.5, 0.0))]
    assert beta_effect(close).verdict == "none"
    apart = [(b, [mean(k, 0.1, 128, "answers")]) for b, k in zip(BETAS, (12.0, 9.0, 7.5, 2.3))]
    assert beta_effect(apart).verdict == "falls"


def test_seeds_use_the_spread_over_seeds_pooled_across_betas():
    noisy = [(b, [Estimate(v) for v in values]) for b, values in zip(BETAS, ([1, 3], [2, 2.5], [1.5, 3], [2, 2.2]))]
    effect = beta_effect(noisy)
    assert effect.verdict == "none" and effect.noise == "seeds"
    rising = [(b, [Estimate(m + d) for d in (-0.1, 0.0, 0.1)]) for b, m in zip(BETAS, (0.5, 1.0, 2.0, 5.0))]
    assert beta_effect(rising).verdict == "rises"
    # Seeds win over each run's own noise: the prompts' binomial noise is not the training's.
    seeded = [(b, [rate(0.5 + d, 128, "prompts") for d in (-0.01, 0.0, 0.01)]) for b in BETAS]
    assert beta_effect(seeded).noise == "seeds"


def test_without_a_noise_estimate_or_a_second_beta_there_is_no_verdict():
    margins = beta_effect([(b, [Estimate(v)]) for b, v in zip(BETAS, (0.5, 1.0, 2.0, 5.0))])
    assert margins.verdict == "unknown"
    assert reading("margins", margins) == "margins: 0.500-5.00, no noise estimate (one run per beta)"
    assert beta_effect(runs([0.5])).verdict == "unknown"
    assert beta_effect([(0.1, [Estimate(1.0), Estimate(2.0)])]).verdict == "unknown"


def test_the_reading_calls_noise_real_rarely_and_a_real_difference_almost_always():
    rng = random.Random(0)

    def sweep(rates):
        return runs([sum(rng.random() < p for _ in range(128)) / 128 for p in rates])

    false_calls = sum(beta_effect(sweep([0.5] * 4)).verdict != "none" for _ in range(300))
    assert false_calls <= 9  # two tests at 1%: about 2% of sweeps where beta does nothing
    missed = sum(beta_effect(sweep([0.3, 0.4, 0.5, 0.6])).verdict == "none" for _ in range(100))
    assert missed <= 5
