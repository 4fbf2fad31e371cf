"""Methods side by side (scripts/compare_methods.py, `make compare-methods`): one record per run read from its
stages' metrics.json and eval.json, one row per method (its one run's numbers with their noise, or the mean and
standard error over seeds), and compare.md, compare.csv and compare.png."""

from __future__ import annotations

from pathlib import Path

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

SUMMARY = [  # (key, header): one row per method
    ("method", "method"),
    ("seeds", "seeds"),
    ("pass_before", "pass rate before"),
    ("pass_after", "pass rate after"),
    ("content_before", "right content before"),
    ("content_after", "right content after"),
    ("reward_accuracy", "reward accuracy"),
    ("kl", "KL to reference"),
    ("judge_win_rate", "judge win rate"),
    ("judge_lc_win_rate", "judge LC win rate"),
    ("wall_time_s", "wall time (s)"),
]
NUMBERS = [key for key, _ in SUMMARY[2:]]
RATES = {"pass_before", "pass_after", "content_before", "content_after", "reward_accuracy", *runs.JUDGE_RATES}


def read_run(label: str, seed: int, run_dir: Path, stages: list[Path]) -> dict:
    """One run's record, straight from its stages' metrics.json and eval.json (None where absent or unreadable):
    "before" from the first stage's reference, "after" from the last stage's policy, wall time summed over stages.
    Each number comes with its standard error and 95% interval (`<key>_se`, `_low`, `_high`)."""
    metrics = [runs.read_json(stage / METRICS_FILE) for stage in stages]
    first_eval, last_eval = runs.read_json(stages[0] / EVAL_FILE), runs.read_json(stages[-1] / EVAL_FILE)
    status, error = "completed", None
    missing = [stage for stage, m in zip(stages, metrics) if m is None]
    failed = [m for m in metrics if m is not None and m.get("status", "failed") != "completed"]
    if missing:
        status, error = "failed", f"no {METRICS_FILE} in {missing[0]}: see {run_dir.with_suffix('.log')}"
    elif failed:
        status, error = failed[0].get("status", "failed"), failed[0].get("error")
    elif last_eval is None:
        status, error = "no eval.json", "eval_generation is off: make eval run=<the run> adds it"
    before, after = runs.generation_estimates(first_eval, "reference"), runs.generation_estimates(last_eval)
    estimates = {
        "pass_before": before["pass_rate"],
        "pass_after": after["pass_rate"],
        "content_before": before["right_content"],
        "content_after": after["right_content"],
        "reward_accuracy": runs.reward_accuracy(last_eval),
        "kl": after["kl"],
        **runs.judge_estimates(last_eval),
        "wall_time_s": stats.Estimate(sum(m.get("wall_time_s") or 0.0 for m in metrics) if not missing else None),
    }
    record = {"method": label, "seed": seed, "run_dir": str(run_dir), "status": status, "error": error}
    for key in NUMBERS:
        record.update(estimate_fields(key, estimates[key]))
    generation_before, generation_after = (first_eval or {}).get("generation"), (last_eval or {}).get("generation")
    for kind in sorted(runs.lookup(generation_after, "pass_rate_by_kind", "policy") or {}):
        record[f"pass_before/{kind}"] = runs.lookup(generation_before, "pass_rate_by_kind", "reference", kind)
        record[f"pass_after/{kind}"] = runs.lookup(generation_after, "pass_rate_by_kind", "policy", kind)
        record[f"content_before/{kind}"] = runs.lookup(
            generation_before, "right_content_rate_by_kind", "reference", kind
        )
        record[f"content_after/{kind}"] = runs.lookup(generation_after, "right_content_rate_by_kind", "policy", kind)
    return record


def estimate(record: dict, key: str) -> stats.Estimate:
    """The estimate a record or row holds under `key` and its _se/_low/_high fields."""
    over = "seeds" if record.get("seeds", 1) > 1 else "pairs" if key == "reward_accuracy" else "prompts"
    return stats.Estimate(
        record.get(key),
        record.get(f"{key}_se"),
        record.get(f"{key}_low"),
        record.get(f"{key}_high"),
        over=over,
        rate=key in RATES or key.split("/")[0] in RATES,
    )


def summarize(records: list[dict]) -> list[dict]:
    """One row per method over its completed runs: a single run's numbers with their own noise, or `<key>` the mean
    over seeds and `<key>_se` its standard error (per kind too, means and standard errors over seeds)."""
    rows = []
    for label in dict.fromkeys(r["method"] for r in records):
        done = [r for r in records if r["method"] == label and r["status"] == "completed"]
        row = {"method": label, "seeds": len(done)}
        for key in NUMBERS:
            row.update(estimate_fields(key, stats.combine([estimate(r, key) for r in done])))
        kinds = [k for k in dict.fromkeys(k for r in done for k in r) if "/" in k and k.split("/")[0] in NUMBERS]
        for key in kinds:
            mean = stats.over_seeds([r.get(key) for r in done], rate=True)
            row[key], row[f"{key}_se"] = mean.value, mean.se
        rows.append(row)
    return rows


def cell(row: dict, key: str) -> str:
    if key in ("method", "seeds"):
        return str(row[key])
    return estimate_cell(estimate(row, key), ".0f" if key == "wall_time_s" else ".3f")


def shown_columns(rows: list[dict]) -> list[tuple[str, str]]:
    """SUMMARY's columns, the judge's only where some method has a judge (judge=reward_model or judge=llm)."""
    return [(k, h) for k, h in SUMMARY if k not in runs.JUDGE_RATES or any(row.get(k) is not None for row in rows)]


def format_table(rows: list[dict]) -> str:
    """The per-method table, markdown padded to line up in a terminal."""
    columns = shown_columns(rows)
    return markdown_table([[h for _, h in columns]] + [[cell(row, k) for k, _ in columns] for row in rows])


def before_after(row: dict, name: str, kind: str) -> str:
    return " -> ".join(format_cell(row.get(f"{name}_{when}/{kind}"), ".3f") for when in ("before", "after"))


def format_kind_table(rows: list[dict]) -> str:
    """Per method and kind: pass rate and right-content rate, before -> after (means over seeds)."""
    cells = [["method", "kind", "pass rate before -> after", "right content before -> after"]]
    for row in rows:
        for kind in sorted({k.split("/")[1] for k in row if k.startswith("pass_after/") and not k.endswith("_se")}):
            cells.append([row["method"], kind, before_after(row, "pass", kind), before_after(row, "content", kind)])
    return markdown_table(cells)


def write_runs_csv(records: list[dict], path: Path) -> None:
    """One row per run; every record gets every column: None (an empty cell) where a run lacks one, e.g. a failed
    run's per-kind rates."""
    columns = ["method", "seed", "run_dir", "status", "error", *estimate_columns(NUMBERS)]
    columns += [k for k in dict.fromkeys(k for r in records for k in r) if k not in columns]
    write_csv(path, columns, [{c: r.get(c) for c in columns} for r in records])


def write_markdown(rows: list[dict], records: list[dict], shared: list[str], path: Path) -> None:
    lines = [
        "# Methods compared with one budget",
        "",
        f"Overrides shared by every run: `{' '.join(shared) or '(defaults)'}`; seeds "
        f"{', '.join(sorted({str(r['seed']) for r in records}))}. With several seeds, numbers are means over the "
        "completed seeds ± one standard error of the mean; with one, rates carry their 95% Wilson interval over the "
        "prompts or pairs (in parentheses) and KL ± one standard error over the answers.",
        "",
        "Pass rate: greedy answers to held-out prompts that the built-in task's verifier accepts (before = the "
        "base model, after = the trained policy). Right content: answers holding the right answer in any format. "
        "Reward accuracy: held-out pairs whose implicit reward ranks chosen over rejected. KL: mean over the "
        "policy's greedy answers of log pi - log pi_ref summed over answer tokens, to the run's reference. Judge win "
        "rate (with a judge): how often the reward model or LLM judge prefers the policy's answer to the "
        "reference's (ties half), raw and length-controlled, with 95% bootstrap intervals over the prompts "
        "(docs/evaluation.md). Wall time: training and the trainer's evaluations, all stages.",
        "",
        format_table(rows),
        "",
        "## Per kind",
        "",
        format_kind_table(rows),
        "",
    ]
    lines += [
        f"- {r['method']} seed {r['seed']}: {r['status']}: {r['error']}" for r in records if r["status"] != "completed"
    ]
    lines += ["", "![pass rate, right content and KL per method, 95% intervals](compare.png)", ""]
    path.write_text("\n".join(lines))


def plot(rows: list[dict], records: list[dict], path: Path) -> None:
    """Rates (left, 0-1) and KL (right) per method: bars with 95% intervals, each seed's run a faint dot."""
    plt = plots.pyplot()
    labels = [row["method"] for row in rows]
    x = list(range(len(rows)))
    seeded = any(row["seeds"] > 1 for row in rows)

    def bars(ax, key, offsets, **kwargs):
        estimates = [estimate(row, key) for row in rows]
        heights = [e.value if e.value is not None else 0.0 for e in estimates]
        drawn = ax.bar(offsets, heights, yerr=plots.interval_errors(_known(estimates)), capsize=2, **kwargs)
        if seeded:
            for offset, row in zip(offsets, rows):
                done = [r[key] for r in records if r["method"] == row["method"] and r["status"] == "completed"]
                values = [v for v in done if v is not None]
                plots.draw_runs(ax, [offset] * len(values), values, "black")
        return drawn

    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8, 1.8 * len(rows) + 4), 3.8))
    width = 0.2
    for offset, key, label in (
        (-1.5, "pass_before", "pass rate before"),
        (-0.5, "pass_after", "pass rate after"),
        (0.5, "content_before", "right content before"),
        (1.5, "content_after", "right content after"),
    ):
        bars(left, key, [i + offset * width for i in x], width=width, label=label)
    left.set_ylabel("held-out rate (95% interval)")
    left.set_ylim(0, 1)
    left.legend(fontsize=7)
    bars(right, "kl", x, color="tab:gray")
    right.set_ylabel("KL(policy || reference)")
    for ax in (left, right):
        ax.set_xticks(x, labels, rotation=20)
    plots.save_figure(fig, path)


def _known(estimates: list[stats.Estimate]) -> list[stats.Estimate]:
    """Estimates with a value (bars of missing numbers are drawn at 0 with no error bar)."""
    return [e if e.value is not None else stats.Estimate(0.0) for e in estimates]
