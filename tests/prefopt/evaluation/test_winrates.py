"""prefopt/evaluation/winrates.py: the length-controlled win rate removes a judge's taste for length and keeps a real
preference, the intervals cover what they should, the counts and standard errors are the textbook ones."""

import math
import random

import pytest

from prefopt.evaluation.winrates import (
    counts,
    length_controlled,
    mean_and_stderr,
    summarize,
    verifier_agreement,
)


def length_only_case(n=400, seed=0, quality=0.0):
    """Policy answers that are the reference's answers made longer by 0-300 characters, judged by a judge whose
    verdict depends on the length difference only (plus `quality`, a real advantage at equal length)."""
    rng = random.Random(seed)
    reference = [rng.randint(20, 400) for _ in range(n)]
    extra = [rng.randint(0, 300) for _ in range(n)]
    policy = [r + e for r, e in zip(reference, extra)]
    preferences = [float(rng.random() < 1 / (1 + math.exp(-(quality + e / 60)))) for e in extra]
    return preferences, policy, reference


def test_longer_answers_win_raw_but_not_once_length_is_controlled():
    preferences, policy, reference = length_only_case()
    summary = summarize(preferences, policy, reference, resamples=300)
    assert summary["win_rate"] > 0.8  # the judge likes the padding
    assert summary["lc_win_rate"] == pytest.approx(0.5, abs=0.1)  # at equal length there is nothing to prefer
    assert summary["lc_win_rate_ci_low"] < 0.5 < summary["lc_win_rate_ci_high"]
    assert summary["win_rate_ci_low"] > 0.75 and summary["length_coefficient"] > 1


def test_a_real_advantage_survives_the_length_control():
    preferences, policy, reference = length_only_case(quality=1.5)  # sigmoid(1.5) = 0.82 at equal length
    fit = length_controlled(preferences, [p - r for p, r in zip(policy, reference)])
    assert fit.win_rate == pytest.approx(1 / (1 + math.exp(-1.5)), abs=0.1)


def test_without_length_differences_the_controlled_rate_is_the_raw_rate():
    preferences = [1.0, 0.0, 0.5, 1.0, 1.0, 0.0, 0.75, 0.25]
    summary = summarize(preferences, [10] * 8, [10] * 8, resamples=200)
    assert summary["lc_win_rate"] == pytest.approx(summary["win_rate"], abs=1e-3)  # the prior moves it a hair
    assert summary["win_rate"] == pytest.approx(4.5 / 8)
    assert (summary["wins"], summary["losses"], summary["ties"]) == (4, 3, 1)
    assert summary["length_scale_chars"] == 0.0


def test_a_clean_sweep_stays_finite():
    summary = summarize([1.0] * 32, list(range(40, 72)), list(range(32)), resamples=100)
    assert summary["win_rate"] == 1.0 and summary["win_rate_ci_low"] == 1.0
    assert 0.95 < summary["lc_win_rate"] < 1.0


def test_counts_stderr_and_verifier_agreement():
    assert counts([1.0, 0.75, 0.5, 0.25, 0.0]) == {"wins": 2, "losses": 2, "ties": 1}
    mean, stderr = mean_and_stderr([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and stderr == pytest.approx(math.sqrt(5 / 3 / 4))
    # prompts where exactly one passes: 0 (policy passes, judge agrees), 1 (reference passes, judge half), 3 (policy
    # passes, judge disagrees); prompt 2 has both passing and does not count.
    agreement, pairs = verifier_agreement(
        [1.0, 0.5, 0.0, 0.0], policy_pass=[True, False, True, True], reference_pass=[False, True, True, False]
    )
    assert pairs == 3 and agreement == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert verifier_agreement([0.5], [True], [True]) == (None, 0)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        counts([1.5])
