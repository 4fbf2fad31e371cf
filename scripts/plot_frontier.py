"""Plot verifier pass rate against KL to the reference for a sweep: `python scripts/plot_frontier.py <sweep dir>`.

`make frontier sweep=<sweep dir>`. Reads every run (each subfolder with metrics.json and eval.json) and groups
the runs by method and beta: runs that differ only in their seed (`make sweep-beta seeds=1,2,3`) make one point,
the mean, with error bars of one standard error of that mean over the runs (none for a single run); each run is
drawn too, faint. Points no other point beats on both axes are joined as the frontier. Writes frontier.png and
frontier.csv (one row per point: mean, standard error, n) into the sweep dir; --json prints runs and points.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from prefopt import reports
from prefopt.errors import RecipeError
from prefopt.run_files import CONFIG_FILE, EVAL_FILE, METRICS_FILE

FIELDS = [
    "method",
    "beta",
    "n",
    "kl",
    "kl_se",
    "pass_rate",
    "pass_rate_se",
    "reference_pass_rate",
    "on_frontier",
    "runs",
]


def method_label(run_dir: Path, metrics: dict) -> str:
    """The method as its run's config.yaml describes it (reports.method_label), else metrics.json's name."""
    import yaml

    config_path = run_dir / CONFIG_FILE
    if config_path.is_file():
        method = (yaml.safe_load(config_path.read_text()) or {}).get("method") or {}
        if method.get("name"):
            return reports.method_label(method)
    return str(metrics.get("method", "?"))


def read_points(sweep_dir: Path) -> list[dict]:
    """One entry per run folder under `sweep_dir` that holds metrics.json and an eval.json with generation results."""
    if not sweep_dir.is_dir():
        raise RecipeError(f"{sweep_dir}: no such sweep directory.")
    points, skipped = [], []
    for eval_path in sorted(sweep_dir.rglob(EVAL_FILE)):
        run_dir = eval_path.parent
        metrics = reports.read_json(run_dir / METRICS_FILE)
        if metrics is None:
            continue
        generation = (reports.read_json(eval_path) or {}).get("generation") or {}
        kl = reports.finite_number(generation.get("kl_policy_reference"))
        pass_rate = reports.finite_number((generation.get("pass_rate") or {}).get("policy"))
        if kl is None or pass_rate is None:
            skipped.append(run_dir.name)
            continue
        points.append(
            {
                "run": str(run_dir.relative_to(sweep_dir)),
                "method": method_label(run_dir, metrics),
                "beta": reports.finite_number(metrics.get("beta")),
                "seed": _seed(run_dir),
                "kl": kl,
                "pass_rate": pass_rate,
                "reference_pass_rate": reports.finite_number((generation.get("pass_rate") or {}).get("reference")),
            }
        )
    if skipped:
        print(f"skipped (no generation results in {EVAL_FILE}): {', '.join(skipped)}", file=sys.stderr)
    if not points:
        raise RecipeError(
            f"{sweep_dir}: no run folder with {METRICS_FILE} and a generation evaluation in {EVAL_FILE}. Runs on the "
            f"built-in dataset write it after training; for others run `make eval run=<run dir>`."
        )
    return points


def _seed(run_dir: Path) -> int | None:
    import yaml

    config_path = run_dir / CONFIG_FILE
    config = (yaml.safe_load(config_path.read_text()) or {}) if config_path.is_file() else {}
    return (config.get("train") or {}).get("seed")


def standard_error(values: list[float]) -> float | None:
    """Standard error of the mean: sample standard deviation / sqrt(n); None for fewer than two values."""
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None


def _order(beta: float | None) -> float:
    return math.inf if beta is None else beta  # runs without a beta last


def group_points(runs: list[dict]) -> list[dict]:
    """One point per (method, beta): the mean over its runs (seeds) of KL and pass rate, their standard errors, n."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["method"], run["beta"]), []).append(run)
    points = []
    for (method, beta), members in sorted(groups.items(), key=lambda item: (item[0][0], _order(item[0][1]))):
        kls, rates = [r["kl"] for r in members], [r["pass_rate"] for r in members]
        references = [r["reference_pass_rate"] for r in members if r["reference_pass_rate"] is not None]
        points.append(
            {
                "method": method,
                "beta": beta,
                "n": len(members),
                "kl": statistics.fmean(kls),
                "kl_se": standard_error(kls),
                "pass_rate": statistics.fmean(rates),
                "pass_rate_se": standard_error(rates),
                "reference_pass_rate": statistics.fmean(references) if references else None,
                "runs": [r["run"] for r in members],
            }
        )
    mark_frontier(points)
    return points


def mark_frontier(points: list[dict]) -> None:
    """on_frontier: no other point has both a lower-or-equal KL and a higher-or-equal pass rate (one strictly)."""
    for p in points:
        p["on_frontier"] = not any(
            q is not p
            and q["kl"] <= p["kl"]
            and q["pass_rate"] >= p["pass_rate"]
            and (q["kl"] < p["kl"] or q["pass_rate"] > p["pass_rate"])
            for q in points
        )


def label(point: dict) -> str:
    return point["method"] + (f" β={point['beta']:g}" if point["beta"] is not None else "")


def plot(points: list[dict], runs: list[dict], path: Path) -> None:
    plt = reports.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    repeated = any(p["n"] > 1 for p in points)
    for method in sorted({p["method"] for p in points}):
        mine = [p for p in points if p["method"] == method]
        bars = ax.errorbar(
            [p["kl"] for p in mine],
            [p["pass_rate"] for p in mine],
            fmt="o",
            capsize=3,
            zorder=3,
            xerr=[p["kl_se"] or 0.0 for p in mine],
            yerr=[p["pass_rate_se"] or 0.0 for p in mine],
            label=method + (" (mean ± 1 s.e. over seeds)" if repeated else ""),
        )
        if repeated:
            theirs = [r for r in runs if r["method"] == method]
            ax.scatter(
                [r["kl"] for r in theirs],
                [r["pass_rate"] for r in theirs],
                s=10,
                alpha=0.35,
                zorder=2,
                color=bars[0].get_color(),
            )
    for p in points:
        text = label(p) + (f" n={p['n']}" if p["n"] > 1 else "")
        ax.annotate(text, (p["kl"], p["pass_rate"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    frontier = sorted((p["kl"], p["pass_rate"]) for p in points if p["on_frontier"])
    if len(frontier) > 1:
        ax.plot(*zip(*frontier), "--", color="gray", zorder=2, label="frontier")
    references = [p["reference_pass_rate"] for p in points if p["reference_pass_rate"] is not None]
    if references:
        ax.axhline(sum(references) / len(references), color="black", linewidth=0.8, linestyle=":", label="reference")
    ax.margins(x=0.15)  # room for the labels of the outermost points
    ax.set_xlabel("KL(policy || reference) on the policy's answers")
    ax.set_ylabel("held-out verifier pass rate")
    highest = max(
        [r["pass_rate"] for r in runs] + [p["pass_rate"] + (p["pass_rate_se"] or 0.0) for p in points] + references
    )
    ax.set_ylim(-0.03, min(1.03, 1.25 * highest + 0.05))  # zoomed on the data: low pass rates stay readable
    ax.legend(fontsize=8)
    reports.save_figure(fig, path)


def write_csv(points: list[dict], path: Path) -> None:
    """Full-precision numbers, one row per plotted point; runs are joined by ';' and an absent value is empty."""
    reports.write_csv(path, FIELDS, ({**p, "runs": ";".join(p["runs"])} for p in points))


def format_table(points: list[dict]) -> str:
    def mean_se(point, key, spec):
        se = point[f"{key}_se"]
        return reports.format_cell(point[key], spec) + ("" if se is None else " ± " + format(se, spec))

    header = ["method", "beta", "n", "kl", "pass_rate", "reference_pass_rate", "on_frontier", "runs"]
    cells = [header] + [
        [
            p["method"],
            reports.format_cell(p["beta"], "g"),
            str(p["n"]),
            mean_se(p, "kl", ".3f"),
            mean_se(p, "pass_rate", ".3f"),
            reports.format_cell(p["reference_pass_rate"], ".3f"),
            "yes" if p["on_frontier"] else "",
            ",".join(p["runs"]),
        ]
        for p in points
    ]
    return reports.console_table(cells, rule=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    try:
        runs = read_points(args.sweep_dir)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    png, table = args.sweep_dir / "frontier.png", args.sweep_dir / "frontier.csv"
    points = group_points(runs)
    plot(points, runs, png)
    write_csv(points, table)
    if args.json:
        print(
            json.dumps(
                {"sweep_dir": str(args.sweep_dir), "png": str(png), "csv": str(table), "runs": runs, "points": points}
            )
        )
    else:
        print(format_table(points))
        print(f"\nwritten: {png}, {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
