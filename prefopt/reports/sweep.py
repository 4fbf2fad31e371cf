"""A Hydra sweep's summary (scripts/summarize_sweep.py, `make sweep-beta`): one row per job, one per setting (the
jobs that differ only in their seed), a one-line reading of what beta moved beyond its noise, and summary.csv,
summary_by_setting.csv, summary.md and summary.png in the sweep directory."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from prefopt.config import override_key
from prefopt.errors import RecipeError
from prefopt.reports import plots, runs, stats
from prefopt.reports.tables import (
    estimate_cell,
    estimate_columns,
    estimate_fields,
    format_cell,
    markdown_table,
    write_csv,
)
from prefopt.run_files import EVAL_FILE, METRICS_FILE

# The trainer's numbers (metrics.json): TRL logs their means only, so their noise comes from seeds.
TRAINER_METRICS = ["train_loss", "eval_loss", "eval_rewards/accuracies", "eval_rewards/margins"]
# Behaviour (eval.json), shown when some job has it; reward accuracy is not behaviour (docs/evaluation.md). The
# judge's win rates are a reward model's or LLM's (judge=reward_model, judge=llm), raw and length-controlled.
EVAL_METRICS = ["pass_rate", "right_content", "kl", "win_rate", "judge_win_rate", "judge_lc_win_rate"]
LABELS = {
    "train_loss": "train loss",
    "eval_loss": "eval loss",
    "eval_rewards/accuracies": "reward accuracy",
    "eval_rewards/margins": "margins",
    "pass_rate": "pass rate",
    "right_content": "right content",
    "kl": "KL",
    "win_rate": "win rate",
    "judge_win_rate": "judge win rate",
    "judge_lc_win_rate": "judge LC win rate",
}
# The order of the reading line: behaviour first.
READING_ORDER = ["pass_rate", "right_content", "win_rate", "judge_lc_win_rate", "judge_win_rate", "kl"]
READING_ORDER += ["eval_rewards/accuracies", "eval_rewards/margins"]
READING_ORDER += ["eval_loss", "train_loss"]
OUTPUT_FILES = ("summary.csv", "summary_by_setting.csv", "summary.md", "summary.png")


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
    """Overrides, status, beta, seed and metrics of one job (each an Estimate in row["estimates"]); a job without a
    readable metrics.json counts as failed."""
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in (yaml.safe_load(overrides_file.read_text()) or [])] if overrides_file.is_file() else []
    metrics = runs.read_json(job_dir / METRICS_FILE)
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
    evaluation = runs.read_json(job_dir / EVAL_FILE) or {}
    config = runs.read_config(job_dir)
    row = {
        "job": job_dir.name,
        "overrides": overrides,
        "beta": _beta(metrics, overrides, config),
        "seed": _seed(overrides, config),
        "method": config.get("method") or {},
        "status": status,
        "prompts": runs.lookup(evaluation, "generation", "num_prompts")
        or runs.lookup(evaluation, "answers", "num_prompts"),
        "pairs": runs.lookup(evaluation, "pairs", "num_pairs"),
        "wall_time_s": stats.finite_number(metrics.get("wall_time_s")) if status == "completed" else None,
        "error": error,
    }
    estimates = {}
    if status == "completed":
        estimates = {key: stats.Estimate(stats.finite_number(metrics.get(key))) for key in TRAINER_METRICS}
        estimates["eval_rewards/accuracies"] = runs.reward_accuracy(evaluation, metrics.get("eval_rewards/accuracies"))
        nested = {**runs.generation_estimates(evaluation), **runs.judge_estimates(evaluation)}
        for key in EVAL_METRICS:
            # Flat `pass_rate` / `kl` in eval.json or metrics.json: a value written by hand or another tool.
            flat = next(
                (v for v in (evaluation.get(key), metrics.get(key)) if stats.finite_number(v) is not None), None
            )
            estimates[key] = nested[key] if nested[key].value is not None else stats.Estimate(stats.finite_number(flat))
    row["estimates"] = {key: estimates.get(key, stats.Estimate(None)) for key in TRAINER_METRICS + EVAL_METRICS}
    return row


def _beta(metrics: dict, overrides: list[str], config: dict) -> float | None:
    beta = stats.finite_number(metrics.get("beta"))
    if beta is not None:
        return beta
    for override in overrides:
        if override_key(override) == "method.beta":
            try:
                return float(override.split("=", 1)[1])
            except ValueError:
                break
    return stats.finite_number((config.get("method") or {}).get("beta"))


def _seed(overrides: list[str], config: dict):
    seed = (config.get("train") or {}).get("seed")
    for override in overrides:
        if override_key(override) == "train.seed":
            seed = yaml.safe_load(override.split("=", 1)[1])
    return seed


def group_settings(rows: list[dict]) -> list[dict]:
    """One entry per setting (the jobs' distinguishing overrides less train.seed), completed jobs only, in beta
    order: its beta, jobs, seeds and, per metric, the one job's estimate or the mean over its seeds (estimates), and
    each job's (run_estimates)."""
    m_keys = TRAINER_METRICS + EVAL_METRICS
    settings: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["status"] == "completed":
            key = tuple(o for o in row["overrides"] if override_key(o) != "train.seed")
            settings.setdefault(key, []).append(row)
    groups = []
    for setting, members in settings.items():
        estimates = {
            key: stats.combine([m["estimates"][key] for m in members]) for key in TRAINER_METRICS + EVAL_METRICS
        }
        estimates["wall_time_s"] = stats.over_seeds([m["wall_time_s"] for m in members])
        groups.append(
            {
                "setting": list(setting),
                "beta": members[0]["beta"],
                "jobs": [m["job"] for m in members],
                "seeds": [m["seed"] for m in members],
                "estimates": estimates,
                "run_estimates": {key: [m["estimates"][key] for m in members] for key in m_keys},
            }
        )
    return sorted(groups, key=lambda g: (math.inf if g["beta"] is None else g["beta"], g["setting"]))


def summarize(sweep_dir: Path) -> dict:
    rows = [read_job(job) for job in job_dirs(sweep_dir)]
    # The overrides every job shares say how the sweep was launched; the rest tell the rows apart.
    common = [o for o in rows[0]["overrides"] if all(o in row["overrides"] for row in rows)] if len(rows) > 1 else []
    for row in rows:
        row["overrides"] = [o for o in row["overrides"] if o not in common]
    shown = TRAINER_METRICS + [k for k in EVAL_METRICS if any(r["estimates"][k].value is not None for r in rows)]
    groups = group_settings(rows)
    completed = sum(row["status"] == "completed" for row in rows)
    return {
        "sweep_dir": str(sweep_dir),
        "jobs": len(rows),
        "completed": completed,
        "failed": len(rows) - completed,
        "common_overrides": common,
        "metrics": shown,
        "rows": rows,
        "groups": groups,
        "reading": reading(groups, shown),
        "loss_note": loss_note(rows),
        "files": {name: str(sweep_dir / name) for name in OUTPUT_FILES},
    }


def varies_beta_only(groups: list[dict]) -> bool:
    """The settings differ in beta and nothing else (seeds aside), and every one has a beta."""
    return all(g["beta"] is not None for g in groups) and all(
        override_key(o) == "method.beta" for g in groups for o in g["setting"]
    )


def effects(groups: list[dict], metrics: list[str]) -> dict[str, stats.Effect]:
    """Per metric, what beta did to it (prefopt.reports.stats.beta_effect over each beta's jobs)."""
    found = {}
    for key in metrics:
        found[key] = stats.beta_effect([(g["beta"], g["run_estimates"][key]) for g in groups])
    return found


def reading(groups: list[dict], metrics: list[str]) -> str:
    """The summary's first line: which metrics beta moved beyond their noise, and which it did not."""
    if len(groups) < 2:
        return "one setting completed: nothing to compare."
    if not varies_beta_only(groups):
        return "the jobs differ in more than beta (and seed): no reading across beta; see the tables."
    found = effects(groups, [k for k in READING_ORDER if k in metrics])
    return "; ".join(stats.reading(LABELS[key], effect) for key, effect in found.items() if effect.values) + "."


def loss_note(rows: list[dict]) -> str | None:
    """Where the swept method adds loss terms after the one beta scales (dpo's [sigmoid, sft]), a sentence saying
    that beta does not reach them, and the command that sweeps the first term alone."""
    methods = [row["method"] for row in rows if row["method"].get("name")]
    if not methods:
        return None
    losses = methods[0].get("loss_type")
    if losses is None or isinstance(losses, str) or len(losses) < 2:
        return None
    first, rest = str(losses[0]), ", ".join(str(loss) for loss in losses[1:])
    return (
        f"These jobs train {runs.method_label(methods[0])}: beta scales the {first} term only, and the {rest} term "
        f"beside it does not depend on beta, so beta moves only part of the update. To see what beta does to "
        f'{first} alone: make sweep-beta method={methods[0]["name"]} ARGS="method.loss_type=[{first}]".'
    )


# ------------------------------------------------------------------------------------------- tables and files


def _cell(value) -> str:
    return " ".join(value) if isinstance(value, list) else format_cell(value, ".4g", missing="")


def job_table(summary: dict) -> list[list[str]]:
    """One row per job: its overrides, status and values (no noise: that is per setting)."""
    header = ["job", "overrides", "beta", "status", *summary["metrics"], "wall_time_s"]
    cells = [header]
    for row in summary["rows"]:
        values = {key: row["estimates"][key].value for key in summary["metrics"]}
        cells.append([_cell({**row, **values}[key]) for key in header])
    return cells


def setting_table(summary: dict) -> list[list[str]]:
    """One row per setting: each metric with its noise (rates of one run: 95% interval; else +- 1 s.e.)."""
    header = ["setting", "beta", "runs", *[LABELS[k] for k in summary["metrics"]], "wall time (s)"]
    cells = [header]
    for group in summary["groups"]:
        cells.append(
            [
                " ".join(group["setting"]) or "-",
                format_cell(group["beta"], "g"),
                str(len(group["jobs"])),
                *[estimate_cell(group["estimates"][k]) for k in summary["metrics"]],
                estimate_cell(group["estimates"]["wall_time_s"], ".0f"),
            ]
        )
    return cells


def format_table(summary: dict) -> str:
    """The per-setting table, markdown padded to line up in a terminal: readable printed and valid in summary.md."""
    return markdown_table(setting_table(summary))


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


NOISE = (
    "Rates of one run: value (95% Wilson interval over its prompts or pairs); KL of one run: value ± one standard "
    "error over its answers; several seeds: mean ± one standard error over them. TRL logs only the means of the "
    "losses and margins, so their noise needs seeds. A metric moved beyond noise when a test across betas at the 1% "
    "level finds a trend on log(beta) or a difference (docs/sweeps.md, Reading a sweep)."
)


def write_csvs(summary: dict, sweep_dir: Path) -> None:
    """summary.csv, one row per job, and summary_by_setting.csv, one per setting: full-precision values with
    their standard error and 95% interval columns."""
    keys = summary["metrics"]
    job_columns = ["job", "overrides", "beta", "seed", "status", "prompts", "pairs", *estimate_columns(keys)]
    write_csv(
        sweep_dir / "summary.csv",
        [*job_columns, "wall_time_s", "error"],
        (
            {
                **row,
                "overrides": " ".join(row["overrides"]),
                **{c: v for key in keys for c, v in estimate_fields(key, row["estimates"][key]).items()},
            }
            for row in summary["rows"]
        ),
    )
    write_csv(
        sweep_dir / "summary_by_setting.csv",
        ["setting", "beta", "runs", "jobs", "seeds", *estimate_columns([*keys, "wall_time_s"])],
        (
            {
                "setting": " ".join(group["setting"]),
                "beta": group["beta"],
                "runs": len(group["jobs"]),
                "jobs": ";".join(group["jobs"]),
                "seeds": ";".join(str(s) for s in group["seeds"]),
                **{
                    c: v
                    for key in [*keys, "wall_time_s"]
                    for c, v in estimate_fields(key, group["estimates"][key]).items()
                },
            }
            for group in summary["groups"]
        ),
    )


def write_markdown(summary: dict, path: Path) -> None:
    lines = ["# Sweep summary", "", f"**Reading:** {summary['reading']}", ""]
    if summary["loss_note"]:
        lines += [summary["loss_note"], ""]
    lines += [headline(summary) + ".", ""]
    if summary["common_overrides"]:
        lines += ["Overrides shared by every job: `" + " ".join(summary["common_overrides"]) + "`", ""]
    lines += [format_table(summary), "", NOISE, "", "## Jobs", "", markdown_table(job_table(summary)), ""]
    if summary["failed"]:
        lines += ["Failed jobs:", ""] + [f"- {line}" for line in failures(summary)] + [""]
    lines += ["![metrics against beta, 95% intervals](summary.png)", ""]
    path.write_text("\n".join(lines))


def plot(summary: dict, path: Path) -> None:
    """One panel per metric against beta (setting number when beta is not known): each setting's value with its
    95% interval, each job faint behind a mean over seeds; rate panels span at least plots.MIN_RATE_SPAN."""
    plt = plots.pyplot()
    groups, rows = summary["groups"], summary["rows"]
    by_beta = bool(groups) and all(g["beta"] is not None for g in groups)
    beta_only = varies_beta_only(groups)
    seeded = any(len(g["jobs"]) > 1 for g in groups)
    metrics = [m for m in summary["metrics"] if any(g["estimates"][m].value is not None for g in groups)]
    metrics = metrics or summary["metrics"][:1]
    cols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    job_rows = {row["job"]: row for row in rows}
    for ax, metric in zip(axes.flat, metrics):
        points = [
            (g["beta"] if by_beta else i, g) for i, g in enumerate(groups) if g["estimates"][metric].value is not None
        ]
        if points:
            xs = [x for x, _ in points]
            log_scale = by_beta and min(xs) > 0 and max(xs) / min(xs) >= 10
            estimates = [g["estimates"][metric] for _, g in points]
            bars = plots.draw_estimates(ax, xs, estimates, fmt="o-" if beta_only and len(set(xs)) == len(xs) else "o")
            run_values = []
            if seeded:
                run_points = [
                    (x, job_rows[job]["estimates"][metric].value)
                    for x, g in points
                    for job in g["jobs"]
                    if job_rows[job]["estimates"][metric].value is not None
                ]
                run_values = [v for _, v in run_points]
                # Just right of their mean, so the error bar does not hide them.
                nudged = [x * 1.12 if log_scale else x + 0.02 * (max(xs) - min(xs) or 1) for x, _ in run_points]
                plots.draw_runs(ax, nudged, run_values, bars[0].get_color())
            if any(e.rate for e in estimates):
                plots.set_rate_axis(ax, estimates, run_values)
            if log_scale:
                ax.set_xscale("log")
                ax.minorticks_off()
            if len(set(xs)) <= 8:  # a grid sweep: label exactly the betas (or settings) that ran
                ax.set_xticks(sorted(set(xs)), [f"{x:g}" for x in sorted(set(xs))])
        else:
            ax.text(0.5, 0.5, "no completed job", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("beta" if by_beta else "setting")
        ax.set_title(LABELS[metric])
        ax.grid(alpha=0.3)
    noise = "mean ± 95% interval over seeds, each run faint" if seeded else "95% intervals"
    fig.suptitle(
        f"{Path(summary['sweep_dir']).name}: {summary['completed']}/{summary['jobs']} jobs completed ({noise})"
    )
    plots.save_figure(fig, path, dpi=100)


def write_outputs(summary: dict, sweep_dir: Path) -> None:
    write_csvs(summary, sweep_dir)
    write_markdown(summary, sweep_dir / "summary.md")
    plot(summary, sweep_dir / "summary.png")


def to_json(summary: dict) -> dict:
    """The summary as plain JSON: each estimate flattened into value, _se, _low and _high keys."""

    def flat(record: dict) -> dict:
        estimates = record["estimates"]
        plain = {k: v for k, v in record.items() if k not in ("estimates", "run_estimates")}
        return {**plain, **{c: v for key, e in estimates.items() for c, v in estimate_fields(key, e).items()}}

    return {**summary, "rows": [flat(r) for r in summary["rows"]], "groups": [flat(g) for g in summary["groups"]]}
