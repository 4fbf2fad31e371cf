"""matplotlib figures written without a display: estimates with their 95% intervals, each run drawn faint behind a
mean over seeds, and rate axes wide enough that noise does not look like an effect."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefopt.reports.stats import Estimate

# A rate panel spans at least this much of [0, 1]: scaled to the data, a 0.04 difference (five prompts of 128,
# inside one run's noise) would fill the panel and read as an optimum.
MIN_RATE_SPAN = 0.3


def pyplot():
    """matplotlib.pyplot on the Agg backend: no display, files only (imported on first use: it is slow to load)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """Lay the figure out, write it to `path` (the format from its suffix) and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def interval_errors(estimates: Sequence[Estimate]) -> list[list[float]]:
    """matplotlib's asymmetric error bars, [below, above], from each estimate's 95% interval (0 where unknown)."""
    below = [e.value - e.low if e.low is not None else 0.0 for e in estimates]
    above = [e.high - e.value if e.high is not None else 0.0 for e in estimates]
    return [below, above]


def draw_estimates(ax, xs: Sequence[float], estimates: Sequence[Estimate], fmt: str = "o", **kwargs):
    """Points at each estimate's value with its 95% interval as an error bar; returns matplotlib's container."""
    return ax.errorbar(
        xs, [e.value for e in estimates], yerr=interval_errors(estimates), fmt=fmt, capsize=3, zorder=3, **kwargs
    )


def draw_runs(ax, xs: Sequence[float], values: Sequence[float], color) -> None:
    """Each run of a mean over seeds, faint behind it."""
    ax.scatter(xs, values, s=12, alpha=0.35, zorder=2, color=color, linewidths=0)


def rate_limits(values: Sequence[float]) -> tuple[float, float]:
    """y-limits for a rate panel: around `values` (points and interval ends), at least MIN_RATE_SPAN wide, in [0, 1]
    with a little room at the edges."""
    low, high = min(values, default=0.0), max(values, default=1.0)
    span = max(high - low, MIN_RATE_SPAN)
    centre = (low + high) / 2
    low, high = centre - span / 2, centre + span / 2
    if low < 0:
        low, high = 0.0, min(1.0, high - low)
    if high > 1:
        low, high = max(0.0, low - (high - 1)), 1.0
    pad = 0.03 * (high - low)
    return low - pad, high + pad


def set_rate_axis(ax, estimates: Sequence[Estimate], runs: Sequence[float] = ()) -> None:
    ends = [v for e in estimates for v in (e.value, e.low, e.high) if v is not None] + list(runs)
    ax.set_ylim(*rate_limits(ends))
