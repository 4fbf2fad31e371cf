"""Summarize a Hydra sweep: `python scripts/summarize_sweep.py multirun/dpo/smollm2-135m/<time> [--json]`.

One row per job (its overrides, status and final metrics; pass rate and KL when an evaluation wrote them), written
to summary.csv, summary.md and summary.png (metrics against beta) in the sweep directory. `make sweep-beta` runs it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import yaml

from prefopt import reports
from prefopt.errors import RecipeError
from prefopt.run_files import CONFIG_FILE, EVAL_FILE, METRICS_FILE

METRICS = ["train_loss", "eval_loss", "eval_rewards/accuracies", "eval_rewards/margins"]
# Behaviour metrics, shown only when some job has them (reward accuracy is not behaviour: see docs/evaluation.md). Each is read
# flat (`pass_rate`) or where prefopt/evaluation nests it: the policy's greedy pass rate, its KL to the reference.
EVAL_METRICS = {
    "pass_rate": ("generation", "pass_rate", "policy"),
    "kl": ("generation", "kl_policy_reference"),
    "win_rate": ("generation", "win_rate"),
}
OUTPUT_FILES = ("summary.csv", "summary.md", "summary.png")


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's job directories (Hydra's numbered subdirs), in job order."""
    if not sweep_dir.is_dir():
        raise RecipeError(f"{sweep_dir}: no such sweep directory.")
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and ((p / ".hydra").is_dir() or (p / METRICS_FILE).exists())]
    if not jobs:
        raise RecipeError(
            f"{sweep_dir} holds no job directories (subfolders with .hydra/ or {METRICS_FILE}): "
            f"pass the sweep directory itself, e.g. multirun/dpo/smollm2-135m/<time>."
        )
    return sorted(jobs, key=lambda p: (0, int(p.name), "") if p.name.isdigit() else (1, 0, p.name))


def read_job(job_dir: Path) -> dict:
    """Overrides, status, beta and metrics of one job; a job without a readable metrics.json counts as failed."""
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in (yaml.safe_load(overrides_file.read_text()) or [])] if overrides_file.is_file() else []
    metrics = reports.read_json(job_dir / METRICS_FILE)
    if metrics is None:
        state = "missing" if not (job_dir / METRICS_FILE).exists() else "unreadable"
        status, error, metrics = (
            "failed",
            f"{METRICS_FILE} {state}: the job crashed, was stopped or is still running",
            {},
        )
    else:
        status = str(metrics.get("status", "completed"))
        error = metrics.get("error")
    evaluation = reports.read_json(job_dir / EVAL_FILE) or {}

    row = {"job": job_dir.name, "overrides": overrides, "beta": _beta(metrics, overrides, job_dir), "status": status}
    for key in METRICS + ["wall_time_s"]:
        row[key] = reports.finite_number(metrics.get(key)) if status == "completed" else None
    for key, nested in EVAL_METRICS.items():
        found = [
            reports.finite_number(reports.lookup(source, *path))
            for source in (evaluation, metrics)
            for path in ((key,), nested)
        ]
        row[key] = next((v for v in found if v is not None), None) if status == "completed" else None
    row["error"] = error
    return row


def _beta(metrics: dict, overrides: list[str], job_dir: Path) -> float | None:
    beta = reports.finite_number(metrics.get("beta"))
    if beta is not None:
        return beta
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+") == "method.beta":
            try:
                return float(value)
            except ValueError:
                break
    config_file = job_dir / CONFIG_FILE
    if config_file.is_file():
        config = yaml.safe_load(config_file.read_text()) or {}
        return reports.finite_number((config.get("method") or {}).get("beta"))
    return None


def summarize(sweep_dir: Path) -> dict:
    rows = [read_job(job) for job in job_dirs(sweep_dir)]
    # The overrides every job shares say how the sweep was launched; the rest tell the rows apart.
    common = [o for o in rows[0]["overrides"] if all(o in row["overrides"] for row in rows)] if len(rows) > 1 else []
    for row in rows:
        row["overrides"] = [o for o in row["overrides"] if o not in common]
    columns = METRICS + [key for key in EVAL_METRICS if any(row[key] is not None for row in rows)]
    completed = sum(row["status"] == "completed" for row in rows)
    return {
        "sweep_dir": str(sweep_dir),
        "jobs": len(rows),
        "completed": completed,
        "failed": len(rows) - completed,
        "common_overrides": common,
        "metrics": columns,
        "rows": rows,
        "files": {name: str(sweep_dir / name) for name in OUTPUT_FILES},
    }


def _cell(value) -> str:
    return " ".join(value) if isinstance(value, list) else reports.format_cell(value, ".4g", missing="")


def table_rows(summary: dict) -> list[list[str]]:
    header = ["job", "overrides", "beta", "status", *summary["metrics"], "wall_time_s"]
    return [header] + [[_cell(row[key]) for key in header] for row in summary["rows"]]


def format_table(summary: dict) -> str:
    """A markdown table padded to line up in a terminal: readable printed and valid in summary.md."""
    return reports.markdown_table(table_rows(summary))


def failures(summary: dict) -> list[str]:
    return [
        f"job {row['job']} ({_cell(row['overrides']) or 'no overrides'}): {row['status']}: {row['error']}"
        for row in summary["rows"]
        if row["status"] != "completed"
    ]


def headline(summary: dict) -> str:
    return (
        f"{summary['sweep_dir']}: {summary['jobs']} jobs, {summary['completed']} completed, {summary['failed']} failed"
    )


def write_csv(summary: dict, path: Path) -> None:
    """Full-precision numbers (the table rounds them), one row per job."""
    header = ["job", "overrides", "beta", "status", *summary["metrics"], "wall_time_s", "error"]
    reports.write_csv(path, header, ({**row, "overrides": " ".join(row["overrides"])} for row in summary["rows"]))


def write_markdown(summary: dict, path: Path) -> None:
    lines = ["# Sweep summary", "", headline(summary) + ".", ""]
    if summary["common_overrides"]:
        lines += ["Overrides shared by every job: `" + " ".join(summary["common_overrides"]) + "`", ""]
    lines += [format_table(summary), ""]
    if summary["failed"]:
        lines += ["Failed jobs:", ""] + [f"- {line}" for line in failures(summary)] + [""]
    lines += ["![metrics against beta](summary.png)", ""]
    path.write_text("\n".join(lines))


def plot(summary: dict, path: Path) -> None:
    """One panel per metric against beta (job number when beta is not known), completed jobs only."""
    plt = reports.pyplot()
    done = [row for row in summary["rows"] if row["status"] == "completed"]
    by_beta = bool(done) and all(row["beta"] is not None for row in done)
    # A line joins the points only when beta is all that varies; a search over more knobs gets bare points.
    beta_only = all(o.partition("=")[0].lstrip("+") == "method.beta" for row in done for o in row["overrides"])
    metrics = [m for m in summary["metrics"] if any(row[m] is not None for row in done)] or summary["metrics"][:1]
    cols = min(4, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, metrics):
        points = sorted(
            (row["beta"] if by_beta else int(row["job"]) if row["job"].isdigit() else i, row[metric])
            for i, row in enumerate(done)
            if row[metric] is not None
        )
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, "o-" if beta_only and len(set(xs)) == len(xs) else "o")
            if by_beta and min(xs) > 0 and max(xs) / min(xs) >= 10:
                ax.set_xscale("log")
                ax.minorticks_off()
            if by_beta and len(set(xs)) <= 8:  # a grid sweep: label exactly the betas that ran
                ax.set_xticks(sorted(set(xs)), [f"{x:g}" for x in sorted(set(xs))])
        else:
            ax.text(0.5, 0.5, "no completed job", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("beta" if by_beta else "job")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{Path(summary['sweep_dir']).name}: {summary['completed']}/{summary['jobs']} jobs completed")
    reports.save_figure(fig, path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep directory (holds one numbered folder per job)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.sweep_dir)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    write_csv(summary, args.sweep_dir / "summary.csv")
    write_markdown(summary, args.sweep_dir / "summary.md")
    plot(summary, args.sweep_dir / "summary.png")
    if args.json:
        print(json.dumps(summary))
    else:
        print(headline(summary))
        if summary["common_overrides"]:
            print("shared overrides: " + " ".join(summary["common_overrides"]))
        print(format_table(summary))
        for line in failures(summary):
            print("FAILED " + line)
        print("wrote " + ", ".join(summary["files"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
