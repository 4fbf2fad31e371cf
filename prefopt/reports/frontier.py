"""Pass rate against KL to the reference (scripts/plot_frontier.py, `make frontier`): one point per method and beta
(the mean over its seeds), each with its 95% intervals, the runs drawn faint, the points nothing beats on both axes
joined as the frontier; frontier.png and frontier.csv.

Where there is no verifier (any dataset but the built-in one), the judge's length-controlled win rate over the
reference takes the pass rate's place (a run evaluated with judge=reward_model or judge=llm): the raw win rate would
reward the longer answers that drifting from the reference buys, which is what the frontier is there to show."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from prefopt.errors import RecipeError
from prefopt.reports import plots, runs, stats
from prefopt.reports.tables import (
    console_table,
    estimate_cell,
    estimate_columns,
    estimate_fields,
    format_cell,
    write_csv,
)
from prefopt.run_files import EVAL_FILE, METRICS_FILE

ESTIMATES = ["kl", "pass_rate", *runs.JUDGE_RATES]
FIELDS = ["method", "beta", "n", *estimate_columns(ESTIMATES), "reference_pass_rate", "on_frontier", "runs"]
Y_LABELS = {
    "pass_rate": "held-out verifier pass rate",
    "judge_lc_win_rate": "judge's length-controlled win rate over the reference",
}


def run_label(run_dir: Path, metrics: dict) -> str:
    """The method as its run's config.yaml describes it (runs.method_label), else metrics.json's name."""
    method = runs.read_config(run_dir).get("method") or {}
    return runs.method_label(method) if method.get("name") else str(metrics.get("method", "?"))


def read_runs(sweep_dir: Path) -> list[dict]:
    """One entry per run folder under `sweep_dir` that holds metrics.json and an eval.json with the answers' KL and a
    pass rate (the verifier's) or a judge's win rates: each as an estimate (standard error over answers, Wilson or
    bootstrap interval over prompts). With a pass rate in some run, runs without one are left out, and the other way
    round: one y axis for all (y_metric)."""
    if not sweep_dir.is_dir():
        raise RecipeError(f"{sweep_dir}: no such sweep directory.")
    found, skipped = [], []
    for eval_path in sorted(sweep_dir.rglob(EVAL_FILE)):
        run_dir = eval_path.parent
        metrics = runs.read_json(run_dir / METRICS_FILE)
        if metrics is None:
            continue
        evaluation = runs.read_json(eval_path)
        policy, reference = runs.generation_estimates(evaluation), runs.generation_estimates(evaluation, "reference")
        judge = runs.judge_estimates(evaluation)
        scored = policy["pass_rate"].value is not None or judge["judge_lc_win_rate"].value is not None
        if policy["kl"].value is None or not scored:
            skipped.append(run_dir.name)
            continue
        found.append(
            {
                "run": str(run_dir.relative_to(sweep_dir)),
                "method": run_label(run_dir, metrics),
                "beta": stats.finite_number(metrics.get("beta")),
                "seed": (runs.read_config(run_dir).get("train") or {}).get("seed"),
                "kl": policy["kl"],
                "pass_rate": policy["pass_rate"],
                **judge,
                "reference_pass_rate": reference["pass_rate"].value,
            }
        )
    y = y_metric(found)
    skipped += [Path(r["run"]).name for r in found if r[y].value is None]
    found = [r for r in found if r[y].value is not None]
    if skipped:
        print(
            f"skipped (no KL and {Y_LABELS[y] if found else 'pass rate or judge win rate'} in {EVAL_FILE}): "
            f"{', '.join(skipped)}",
            file=sys.stderr,
        )
    if not found:
        raise RecipeError(
            f"{sweep_dir}: no run folder with {METRICS_FILE} and an {EVAL_FILE} holding the answers' KL and a pass "
            f"rate or a judge's win rate. Runs on the built-in dataset are scored by its verifier after training; for "
            f"other data give a judge: make eval run=<run dir> judge=reward_model "
            f'ARGS="--force judge.model=<reward model>" (docs/evaluation.md).'
        )
    return found


def y_metric(found: list[dict]) -> str:
    """What the frontier plots against KL: the verifier's pass rate where some run has one, else the judge's
    length-controlled win rate."""
    return "pass_rate" if any(r["pass_rate"].value is not None for r in found) else "judge_lc_win_rate"


def _order(beta: float | None) -> float:
    return math.inf if beta is None else beta  # runs without a beta last


def group_points(found: list[dict]) -> list[dict]:
    """One point per (method, beta): KL, pass rate and judge win rates of its one run, or their means over its runs
    (seeds) with the standard error over them; n runs."""
    groups: dict[tuple, list[dict]] = {}
    for run in found:
        groups.setdefault((run["method"], run["beta"]), []).append(run)
    points = []
    for (method, beta), members in sorted(groups.items(), key=lambda item: (item[0][0], _order(item[0][1]))):
        references = [r["reference_pass_rate"] for r in members if r["reference_pass_rate"] is not None]
        points.append(
            {
                "method": method,
                "beta": beta,
                "n": len(members),
                **{key: stats.combine([r[key] for r in members]) for key in ESTIMATES},
                "reference_pass_rate": sum(references) / len(references) if references else None,
                "runs": [r["run"] for r in members],
            }
        )
    mark_frontier(points, y_metric(found))
    return points


def mark_frontier(points: list[dict], y: str = "pass_rate") -> None:
    """on_frontier: no other point has both a lower-or-equal KL and a higher-or-equal `y` (one strictly)."""
    for p in points:
        kl, rate = p["kl"].value, p[y].value
        p["on_frontier"] = not any(
            q is not p and q["kl"].value <= kl and q[y].value >= rate and (q["kl"].value < kl or q[y].value > rate)
            for q in points
        )


def label(point: dict) -> str:
    return point["method"] + (f" β={point['beta']:g}" if point["beta"] is not None else "")


def plot(points: list[dict], found: list[dict], path: Path) -> None:
    plt = plots.pyplot()
    y = y_metric(found)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    repeated = any(p["n"] > 1 for p in points)
    for method in sorted({p["method"] for p in points}):
        mine = [p for p in points if p["method"] == method]
        kls, rates = [p["kl"] for p in mine], [p[y] for p in mine]
        bars = ax.errorbar(
            [e.value for e in kls],
            [e.value for e in rates],
            xerr=plots.interval_errors(kls),
            yerr=plots.interval_errors(rates),
            fmt="o",
            capsize=3,
            zorder=3,
            label=method + (" (mean, 95% interval over seeds)" if repeated else " (95% intervals)"),
        )
        if repeated:
            theirs = [r for r in found if r["method"] == method]
            plots.draw_runs(ax, [r["kl"].value for r in theirs], [r[y].value for r in theirs], bars[0].get_color())
    for p in points:
        text = label(p) + (f" n={p['n']}" if p["n"] > 1 else "")
        ax.annotate(text, (p["kl"].value, p[y].value), textcoords="offset points", xytext=(4, 4), fontsize=8)
    frontier = sorted((p["kl"].value, p[y].value) for p in points if p["on_frontier"])
    if len(frontier) > 1:
        ax.plot(*zip(*frontier), "--", color="gray", zorder=2, label="frontier")
    if y == "pass_rate":
        references = [p["reference_pass_rate"] for p in points if p["reference_pass_rate"] is not None]
    else:
        references = [0.5]  # the reference judged against itself
    if references:
        ax.axhline(sum(references) / len(references), color="black", linewidth=0.8, linestyle=":", label="reference")
    ax.margins(x=0.15)  # room for the labels of the outermost points
    ax.set_xlabel("KL(policy || reference) on the policy's answers")
    ax.set_ylabel(Y_LABELS[y])
    plots.set_rate_axis(ax, [p[y] for p in points], [r[y].value for r in found] + references)
    ax.legend(fontsize=8)
    plots.save_figure(fig, path)


def write_points_csv(points: list[dict], path: Path) -> None:
    """Full-precision numbers, one row per plotted point; runs are joined by ';' and an absent value is empty."""
    write_csv(path, FIELDS, (flat(p) for p in points))


def flat(record: dict) -> dict:
    """A point or run with its KL, pass-rate and judge win-rate estimates as value, _se, _low and _high fields (for
    CSV and JSON)."""
    plain = {k: v for k, v in record.items() if k not in (*ESTIMATES, "runs")}
    if "runs" in record:
        plain["runs"] = ";".join(record["runs"])
    return {**plain, **{c: v for key in ESTIMATES for c, v in estimate_fields(key, record[key]).items()}}


def format_table(points: list[dict]) -> str:
    """One line per point; the judge's win rates where some point has them."""
    judged = [k for k in runs.JUDGE_RATES if any(p[k].value is not None for p in points)]
    header = ["method", "beta", "n", "kl", "pass_rate", *judged, "reference_pass_rate", "on_frontier", "runs"]
    cells = [header] + [
        [
            p["method"],
            format_cell(p["beta"], "g"),
            str(p["n"]),
            estimate_cell(p["kl"]),
            estimate_cell(p["pass_rate"]),
            *[estimate_cell(p[k]) for k in judged],
            format_cell(p["reference_pass_rate"], ".3f"),
            "yes" if p["on_frontier"] else "",
            ",".join(p["runs"]),
        ]
        for p in points
    ]
    return console_table(cells, rule=False)
