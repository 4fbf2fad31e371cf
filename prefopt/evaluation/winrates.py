"""Did the judge prefer the policy? Win rates from per-prompt preferences, with their uncertainty and corrected for
length.

A preference is the judge's verdict on one prompt, policy over reference, in [0, 1]: 1 a win, 0 a loss, 1/2 a tie
(an LLM judge asked in both orders gives the mean of its two verdicts, so 1/4 and 3/4 occur too).

  win rate                  mean preference (ties count half), with a percentile bootstrap interval over prompts
  length-controlled         AlpacaEval 2's: fit logit P(policy preferred) = theta + phi * tanh(d / sd(d)), d the
                            policy's answer length minus the reference's in characters, by maximum likelihood on the
                            preferences; report sigmoid(theta), the predicted win rate at equal length
  mean score                mean and standard error of the judge's score of each model's answers (a reward, a pass)
  verifier agreement        on prompts where exactly one answer passes the verifier: how often the judge prefers it

AlpacaEval 2 also has an instruction-difficulty term, fitted across a leaderboard of models; with one policy and one
reference there is nothing to fit it on, so it is left out (it shifts the prompts' logits, not the length effect).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# A weak Gaussian prior (sd 10) on theta and phi: keeps the fit finite when the judge prefers one side on every prompt
# (the logistic fit's separation), and moves nothing otherwise (a win rate of 0.999 instead of 1 for 128 straight wins).
RIDGE = 0.01
NEWTON_STEPS = 60


@dataclass(frozen=True)
class LengthFit:
    """logit P(policy preferred) = intercept + length_coefficient * tanh(d / length_scale)."""

    intercept: float
    length_coefficient: float
    length_scale: float  # sd of the length differences (characters); 0 when every difference is the same

    @property
    def win_rate(self) -> float:
        """The predicted preference at equal length: the length-controlled win rate."""
        return 1.0 / (1.0 + math.exp(-self.intercept))


def check_preferences(preferences) -> list[float]:
    values = [float(p) for p in preferences]
    if not values or any(not 0.0 <= p <= 1.0 for p in values):
        raise ValueError("preferences must be numbers in [0, 1], at least one")
    return values


def counts(preferences) -> dict[str, int]:
    """wins (preference above 1/2), losses (below), ties (exactly 1/2)."""
    values = check_preferences(preferences)
    return {
        "wins": sum(p > 0.5 for p in values),
        "losses": sum(p < 0.5 for p in values),
        "ties": sum(p == 0.5 for p in values),
    }


def mean_and_stderr(values) -> tuple[float, float]:
    """The mean and its standard error (sample sd / sqrt(n)); stderr NaN for a single value."""
    values = [float(v) for v in values]
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def _features(length_differences, scale: float) -> torch.Tensor:
    d = torch.tensor([float(x) for x in length_differences], dtype=torch.float64)
    return torch.tanh(d / scale) if scale > 0 else torch.zeros_like(d)


def _fit(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(theta, phi) per row of x, y ([batch, prompts]): Newton's method on the ridge-penalized log-likelihood of
    soft labels y under sigmoid(theta + phi * x). Strictly concave, so it converges from zero."""
    theta = torch.zeros(x.shape[0], dtype=torch.float64)
    phi = torch.zeros_like(theta)
    for _ in range(NEWTON_STEPS):
        p = torch.sigmoid(theta[:, None] + phi[:, None] * x)
        residual, weight = y - p, p * (1 - p)
        g_theta = residual.sum(1) - RIDGE * theta
        g_phi = (residual * x).sum(1) - RIDGE * phi
        h_tt = weight.sum(1) + RIDGE
        h_tp = (weight * x).sum(1)
        h_pp = (weight * x * x).sum(1) + RIDGE
        det = h_tt * h_pp - h_tp * h_tp
        step_theta = (h_pp * g_theta - h_tp * g_phi) / det
        step_phi = (h_tt * g_phi - h_tp * g_theta) / det
        theta, phi = theta + step_theta, phi + step_phi
        if float(torch.maximum(step_theta.abs(), step_phi.abs()).max()) < 1e-10:
            break
    return theta, phi


def length_controlled(preferences, length_differences) -> LengthFit:
    """AlpacaEval 2's length-controlled fit (module docstring) of the preferences on the length differences."""
    y = torch.tensor(check_preferences(preferences), dtype=torch.float64)
    if len(length_differences) != len(y):
        raise ValueError("one length difference per preference")
    d = torch.tensor([float(x) for x in length_differences], dtype=torch.float64)
    scale = float(d.std()) if len(d) > 1 else 0.0
    theta, phi = _fit(_features(length_differences, scale)[None], y[None])
    return LengthFit(float(theta[0]), float(phi[0]), scale)


def summarize(
    preferences, policy_lengths, reference_lengths, *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict:
    """The win rate and the length-controlled win rate, each with a percentile bootstrap interval (prompts resampled
    with replacement, the same resamples for both), the length fit, and the win/loss/tie counts: eval.json's keys."""
    y = torch.tensor(check_preferences(preferences), dtype=torch.float64)
    differences = [float(p) - float(r) for p, r in zip(policy_lengths, reference_lengths, strict=True)]
    fit = length_controlled(y.tolist(), differences)
    x = _features(differences, fit.length_scale)
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(len(y), (resamples, len(y)), generator=generator)
    raw = y[rows].mean(1)
    theta, _ = _fit(x[rows], y[rows])
    low, high = (1 - confidence) / 2, 1 - (1 - confidence) / 2

    def interval(values: torch.Tensor) -> tuple[float, float]:
        return float(torch.quantile(values, low)), float(torch.quantile(values, high))

    raw_low, raw_high = interval(raw)
    lc_low, lc_high = interval(torch.sigmoid(theta))
    return {
        "win_rate": float(y.mean()),
        "win_rate_ci_low": raw_low,
        "win_rate_ci_high": raw_high,
        "lc_win_rate": fit.win_rate,
        "lc_win_rate_ci_low": lc_low,
        "lc_win_rate_ci_high": lc_high,
        "length_coefficient": fit.length_coefficient,
        "length_scale_chars": fit.length_scale,
        "confidence": confidence,
        "bootstrap_resamples": resamples,
        **counts(y.tolist()),
    }


def verifier_agreement(preferences, policy_pass, reference_pass) -> tuple[float | None, int]:
    """(how often the judge prefers the answer the verifier passes, ties half; the number of prompts where exactly one
    of the two passes). None when no prompt has exactly one passing answer."""
    agreements = [
        p if policy_ok else 1.0 - p
        for p, policy_ok, reference_ok in zip(check_preferences(preferences), policy_pass, reference_pass, strict=True)
        if policy_ok != reference_ok
    ]
    return (sum(agreements) / len(agreements) if agreements else None), len(agreements)
