"""Plot verifier pass rate against KL to the reference for a sweep: `python scripts/plot_frontier.py <sweep dir>`.

`make frontier sweep=<sweep dir>`. One point per run (each subfolder with metrics.json and eval.json), labelled
with method and beta; the runs no other run beats on both axes are joined as the frontier. Writes frontier.png
and frontier.csv (the plotted numbers) into the sweep dir; --json prints the points as one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from recipes.errors import RecipeError  # noqa: E402
from recipes.evaluation import EVAL_FILE  # noqa: E402
from recipes.run_files import CONFIG_FILE, METRICS_FILE  # noqa: E402

FIELDS = ["run", "method", "beta", "kl", "pass_rate", "reference_pass_rate", "on_frontier"]


def _finite(value) -> float | None:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if numeric and math.isfinite(value) else None


def method_label(run_dir: Path, metrics: dict) -> str:
    """The method's name, with extra DPO loss terms spelled out (dpo+sft), from the run's config.yaml."""
    import yaml

    name = str(metrics.get("method", "?"))
    config_path = run_dir / CONFIG_FILE
    if config_path.is_file():
        method = (yaml.safe_load(config_path.read_text()) or {}).get("method") or {}
        losses = method.get("loss_type")
        if name == "dpo" and isinstance(losses, list) and losses != ["sigmoid"]:
            return "+".join([name] + [loss for loss in losses if loss != "sigmoid"])
    return name


def read_points(sweep_dir: Path) -> list[dict]:
    """One point per run folder under `sweep_dir` that holds metrics.json and an eval.json with generation results."""
    if not sweep_dir.is_dir():
        raise RecipeError(f"{sweep_dir}: no such sweep directory.")
    points, skipped = [], []
    for eval_path in sorted(sweep_dir.rglob(EVAL_FILE)):
        run_dir = eval_path.parent
        if not (run_dir / METRICS_FILE).is_file():
            continue
        metrics, evaluation = json.loads((run_dir / METRICS_FILE).read_text()), json.loads(eval_path.read_text())
        generation = evaluation.get("generation") or {}
        kl = _finite(generation.get("kl_policy_reference"))
        pass_rate = _finite((generation.get("pass_rate") or {}).get("policy"))
        if kl is None or pass_rate is None:
            skipped.append(run_dir.name)
            continue
        points.append({
            "run": str(run_dir.relative_to(sweep_dir)), "method": method_label(run_dir, metrics),
            "beta": _finite(metrics.get("beta")), "kl": kl, "pass_rate": pass_rate,
            "reference_pass_rate": _finite((generation.get("pass_rate") or {}).get("reference")),
        })
    if skipped:
        print(f"skipped (no generation results in {EVAL_FILE}): {', '.join(skipped)}", file=sys.stderr)
    if not points:
        raise RecipeError(
            f"{sweep_dir}: no run folder with {METRICS_FILE} and a generation evaluation in {EVAL_FILE}. Runs on the "
            f"built-in dataset write it after training; for others run `make eval run=<run dir>`."
        )
    mark_frontier(points)
    return points


def mark_frontier(points: list[dict]) -> None:
    """on_frontier: no other run has both a lower-or-equal KL and a higher-or-equal pass rate (one of them strictly)."""
    for p in points:
        p["on_frontier"] = not any(
            q is not p and q["kl"] <= p["kl"] and q["pass_rate"] >= p["pass_rate"]
            and (q["kl"] < p["kl"] or q["pass_rate"] > p["pass_rate"])
            for q in points
        )


def label(point: dict) -> str:
    return point["method"] + (f" β={point['beta']:g}" if point["beta"] is not None else "")


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for method in sorted({p["method"] for p in points}):
        mine = [p for p in points if p["method"] == method]
        ax.scatter([p["kl"] for p in mine], [p["pass_rate"] for p in mine], label=method, zorder=3)
    for p in points:
        ax.annotate(label(p), (p["kl"], p["pass_rate"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    frontier = sorted((p["kl"], p["pass_rate"]) for p in points if p["on_frontier"])
    if len(frontier) > 1:
        ax.plot(*zip(*frontier), "--", color="gray", zorder=2, label="frontier")
    references = [p["reference_pass_rate"] for p in points if p["reference_pass_rate"] is not None]
    if references:
        ax.axhline(sum(references) / len(references), color="black", linewidth=0.8, linestyle=":", label="reference")
    ax.set_xlabel("KL(policy || reference) on the policy's answers")
    ax.set_ylabel("held-out verifier pass rate")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_csv(points: list[dict], path: Path) -> None:
    """Full-precision numbers, one row per plotted point."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({k: ("" if p[k] is None else p[k]) for k in FIELDS} for p in points)


def format_table(points: list[dict]) -> str:
    def number(value, spec):
        return "-" if value is None else format(value, spec)

    cells = [FIELDS] + [[p["run"], p["method"], number(p["beta"], "g"), number(p["kl"], ".4f"),
                         number(p["pass_rate"], ".3f"), number(p["reference_pass_rate"], ".3f"),
                         "yes" if p["on_frontier"] else ""] for p in points]
    widths = [max(len(row[i]) for row in cells) for i in range(len(FIELDS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    try:
        points = read_points(args.sweep_dir)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    png, table = args.sweep_dir / "frontier.png", args.sweep_dir / "frontier.csv"
    plot(points, png)
    write_csv(points, table)
    if args.json:
        print(json.dumps({"sweep_dir": str(args.sweep_dir), "png": str(png), "csv": str(table), "points": points}))
    else:
        print(format_table(points))
        print(f"\nwritten: {png}, {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
