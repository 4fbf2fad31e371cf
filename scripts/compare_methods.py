"""Train several methods with one budget and seeds, and compare them: `python scripts/compare_methods.py [overrides]`.

`make compare-methods [model= dataset= peft= logger=] ARGS="--seeds 1,2,3 --methods dpo,orpo train.max_steps=60"`.
Runs each method once per seed (same overrides, so the same steps, batch, learning rate and data) into
<out>/<method>/seed-<seed>/, then writes compare.md, compare.csv (one row per run) and compare.png to <out> (default
outputs/compare/<time>). Every number comes from the runs' eval.json and metrics.json: held-out pass rate and
right-content rate (the right answer in any format) before and after, overall and per kind, reward accuracy, KL and
wall time; over seeds, the mean and its standard error. Choose settings with `dataset.eval_split=validation`.
Every method trains through scripts/train.py; a method in stages (sft-dpo) is read from its stage folders.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from prefopt import reports
from prefopt.config import compose_config, override_key
from prefopt.errors import RecipeError
from prefopt.run_files import EVAL_FILE, METRICS_FILE

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Compared:
    """One entry of --methods: a method config of conf/method/, trained with its own overrides too, shown as `label`.
    A method in stages (sft-dpo) keeps one folder per stage: "before" is read from the first stage's reference,
    "after" from the last stage's policy, wall time is summed over stages."""

    label: str
    method: str
    overrides: tuple[str, ...] = ()

    def command(self, run_dir: Path, shared: list[str]) -> list[str]:
        train = REPO / "scripts" / "train.py"
        return [
            sys.executable,
            str(train),
            f"method={self.method}",
            *self.overrides,
            *shared,
            f"hydra.run.dir={run_dir}",
        ]

    def stage_dirs(self, run_dir: Path) -> list[Path]:
        from prefopt.stages import stage_names

        method = compose_config(f"method={self.method}", *self.overrides).method
        return [run_dir / stage for stage in stage_names(method)] or [run_dir]


@functools.cache
def available_methods() -> list[str]:
    """The method configs whose recipe trains a policy (a reward model answers nothing to compare)."""
    from prefopt.run import resolve_plan

    names = sorted(p.stem for p in (REPO / "conf" / "method").glob("*.yaml"))
    # Importing the trainers prints "[INFO] Running in WANDB offline mode" (transformers) where --json needs stdout.
    with contextlib.redirect_stdout(sys.stderr):
        plans = {name: resolve_plan(compose_config(f"method={name}")) for name in names}
    return [name for name, plan in plans.items() if not plan.recipe.trains_reward_model]


def parse_methods(text: str) -> list[Compared]:
    """`dpo,orpo,plain-dpo=dpo:method.loss_type=[sigmoid]`: method configs, each optionally `label=method` with
    overrides of its own after colons (commas inside [...] belong to an override)."""
    entries = [e.strip() for e in re.split(r",(?![^\[]*\])", text) if e.strip()]
    if not entries:
        raise RecipeError("--methods: none given; e.g. --methods dpo,orpo.")
    known, compared = available_methods(), []
    for entry in entries:
        head, *overrides = entry.split(":")
        label, _, method = head.rpartition("=") if "=" in head else (head, "", head)
        if method not in known:
            raise RecipeError(f"--methods: unknown {method} in {entry}; choose from {', '.join(known)}.")
        compared.append(Compared(label, method, tuple(overrides)))
    labels = [c.label for c in compared]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise RecipeError(
            f"--methods: {', '.join(twice)} given twice; label variants: plain-dpo=dpo:method.loss_type=[sigmoid]."
        )
    return compared


SUMMARY = [  # (key, header): one row per method, mean +- standard error over seeds
    ("method", "method"),
    ("seeds", "seeds"),
    ("pass_before", "pass rate before"),
    ("pass_after", "pass rate after"),
    ("content_before", "right content before"),
    ("content_after", "right content after"),
    ("reward_accuracy", "reward accuracy"),
    ("kl", "KL to reference"),
    ("wall_time_s", "wall time (s)"),
]
NUMBERS = [key for key, _ in SUMMARY[2:]]


def run_dir_name(label: str) -> str:
    return label.replace("+", "-").replace("->", "-")


def train_one(compared: Compared, seed: int, shared: list[str], out: Path) -> Path:
    """One run of `compared` with train.seed=`seed`; its console output goes to <out>/<label>/seed-<seed>.log."""
    run_dir = out / run_dir_name(compared.label) / f"seed-{seed}"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    command = compared.command(run_dir, [*shared, f"train.seed={seed}"])
    with run_dir.with_suffix(".log").open("w") as console:
        subprocess.run(command, cwd=REPO, stdout=console, stderr=subprocess.STDOUT, env={**os.environ}, check=False)
    return run_dir


def read_run(compared: Compared, seed: int, run_dir: Path) -> dict:
    """One run's record, straight from its stages' metrics.json and eval.json (None where absent or unreadable)."""
    stages = compared.stage_dirs(run_dir)
    metrics = [reports.read_json(stage / METRICS_FILE) for stage in stages]
    first_eval, last_eval = reports.read_json(stages[0] / EVAL_FILE), reports.read_json(stages[-1] / EVAL_FILE)
    status, error = "completed", None
    missing = [stage for stage, m in zip(stages, metrics) if m is None]
    failed = [m for m in metrics if m is not None and m.get("status", "failed") != "completed"]
    if missing:
        status, error = "failed", f"no {METRICS_FILE} in {missing[0]}: see {run_dir.with_suffix('.log')}"
    elif failed:
        status, error = failed[0].get("status", "failed"), failed[0].get("error")
    elif last_eval is None:
        status, error = "no eval.json", "eval_generation is off or the dataset is not the built-in one"
    generation_before, generation_after = (first_eval or {}).get("generation"), (last_eval or {}).get("generation")
    record = {
        "method": compared.label,
        "seed": seed,
        "run_dir": str(run_dir),
        "status": status,
        "error": error,
        "pass_before": reports.lookup(generation_before, "pass_rate", "reference"),
        "pass_after": reports.lookup(generation_after, "pass_rate", "policy"),
        "content_before": reports.lookup(generation_before, "right_content_rate", "reference"),
        "content_after": reports.lookup(generation_after, "right_content_rate", "policy"),
        "reward_accuracy": reports.lookup(last_eval, "pairs", "reward_accuracy"),
        "kl": reports.lookup(generation_after, "kl_policy_reference"),
        "wall_time_s": sum(m.get("wall_time_s") or 0.0 for m in metrics) if not missing else None,
    }
    for kind in sorted(reports.lookup(generation_after, "pass_rate_by_kind", "policy") or {}):
        record[f"pass_before/{kind}"] = reports.lookup(generation_before, "pass_rate_by_kind", "reference", kind)
        record[f"pass_after/{kind}"] = reports.lookup(generation_after, "pass_rate_by_kind", "policy", kind)
        record[f"content_before/{kind}"] = reports.lookup(
            generation_before, "right_content_rate_by_kind", "reference", kind
        )
        record[f"content_after/{kind}"] = reports.lookup(generation_after, "right_content_rate_by_kind", "policy", kind)
    return record


def mean_and_se(values: list) -> tuple[float | None, float | None]:
    """Mean of the finite values, and the standard error of that mean (None under two values)."""
    numbers = [v for v in map(reports.finite_number, values) if v is not None]
    if not numbers:
        return None, None
    se = statistics.stdev(numbers) / math.sqrt(len(numbers)) if len(numbers) > 1 else None
    return statistics.fmean(numbers), se


def summarize(records: list[dict]) -> list[dict]:
    """One row per method over its completed runs: `<key>` the mean, `<key>_se` its standard error."""
    rows = []
    for label in dict.fromkeys(r["method"] for r in records):
        runs = [r for r in records if r["method"] == label and r["status"] == "completed"]
        row = {"method": label, "seeds": len(runs)}
        keys = [k for k in dict.fromkeys(k for r in runs for k in r) if k.split("/")[0] in NUMBERS] or NUMBERS
        for key in keys:
            row[key], row[f"{key}_se"] = mean_and_se([r.get(key) for r in runs])
        rows.append(row)
    return rows


def cell(row: dict, key: str) -> str:
    if key in ("method", "seeds"):
        return str(row[key])
    spec = ".0f" if key == "wall_time_s" else ".3f"
    text = reports.format_cell(row.get(key), spec)
    se = row.get(f"{key}_se")
    return f"{text} ± {reports.format_cell(se, spec)}" if se is not None and text != "-" else text


def format_table(rows: list[dict]) -> str:
    """The per-method table (mean ± standard error over seeds), markdown padded to line up in a terminal."""
    return reports.markdown_table([[h for _, h in SUMMARY]] + [[cell(row, k) for k, _ in SUMMARY] for row in rows])


def before_after(row: dict, name: str, kind: str) -> str:
    return " -> ".join(reports.format_cell(row.get(f"{name}_{when}/{kind}"), ".3f") for when in ("before", "after"))


def format_kind_table(rows: list[dict]) -> str:
    """Per method and kind: pass rate and right-content rate, before -> after (means over seeds)."""
    cells = [["method", "kind", "pass rate before -> after", "right content before -> after"]]
    for row in rows:
        for kind in sorted({k.split("/")[1] for k in row if k.startswith("pass_after/") and not k.endswith("_se")}):
            cells.append([row["method"], kind, before_after(row, "pass", kind), before_after(row, "content", kind)])
    return reports.markdown_table(cells)


def write_markdown(rows: list[dict], records: list[dict], shared: list[str], path: Path) -> None:
    lines = [
        "# Methods compared with one budget",
        "",
        f"Overrides shared by every run: `{' '.join(shared) or '(defaults)'}`; seeds "
        f"{', '.join(sorted({str(r['seed']) for r in records}))}. Numbers are means over the completed seeds ± one "
        "standard error of the mean.",
        "",
        "Pass rate: greedy answers to held-out prompts that the built-in task's verifier accepts (before = the "
        "base model, after = the trained policy). Right content: answers holding the right answer in any format. "
        "Reward accuracy: held-out pairs whose implicit reward ranks chosen over rejected. KL: mean over the "
        "policy's greedy answers of log pi - log pi_ref summed over answer tokens, to the run's reference. Wall "
        "time: training and the trainer's evaluations, all stages.",
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
    lines += ["", "![pass rate, right content and KL per method](compare.png)", ""]
    path.write_text("\n".join(lines))


def plot(rows: list[dict], path: Path) -> None:
    plt = reports.pyplot()
    labels = [row["method"] for row in rows]
    x = list(range(len(rows)))

    def values(key):
        return [reports.finite_number(row.get(key)) or 0.0 for row in rows]

    def errors(key):
        return [reports.finite_number(row.get(f"{key}_se")) or 0.0 for row in rows]

    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8, 1.8 * len(rows) + 4), 3.8))
    width = 0.2
    for offset, key, label in (
        (-1.5, "pass_before", "pass rate before"),
        (-0.5, "pass_after", "pass rate after"),
        (0.5, "content_before", "right content before"),
        (1.5, "content_after", "right content after"),
    ):
        left.bar([i + offset * width for i in x], values(key), width, yerr=errors(key), label=label, capsize=2)
    left.set_ylabel("held-out rate")
    left.set_ylim(0, 1)
    left.legend(fontsize=7)
    right.bar(x, values("kl"), yerr=errors("kl"), color="tab:gray", capsize=2)
    right.set_ylabel("KL(policy || reference)")
    for ax in (left, right):
        ax.set_xticks(x, labels, rotation=20)
    reports.save_figure(fig, path)


def one_budget(overrides: list[str]) -> list[str]:
    """The overrides, with conf/train.yaml's train.max_steps made explicit unless given: a method with a budget of
    its own (conf/budget/, pulled in by its method config) would otherwise train longer than the others."""
    if any(override_key(o) == "train.max_steps" for o in overrides):
        return overrides
    return [*overrides, f"train.max_steps={OmegaConf.load(REPO / 'conf' / 'train.yaml').train.max_steps}"]


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise RecipeError(f"--seeds {text}: give comma-separated integers, e.g. --seeds 1,2,3.") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise RecipeError(f"--seeds {text}: give one or more distinct integers, e.g. --seeds 1,2,3.")
    return seeds


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods",
        help="comma-separated method configs (default: every one that trains a policy); label=method:override:... "
        "adds a variant, e.g. plain-dpo=dpo:method.loss_type=[sigmoid]",
    )
    parser.add_argument("--seeds", default="42", help="comma-separated train.seed values, one run each (default 42)")
    parser.add_argument("--out", type=Path, help="output folder (default outputs/compare/<time>)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args, overrides = parser.parse_known_args(argv)
    unknown = [o for o in overrides if o.startswith("--")]
    if unknown:
        parser.error(f"unknown option(s) {' '.join(unknown)}; Hydra overrides look like key=value")
    seeded = [o for o in overrides if override_key(o) == "train.seed"]
    if seeded:
        parser.error(f"{seeded[0]}: give seeds with --seeds (one run per seed), not as an override")
    return args, overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    try:
        methods = parse_methods(args.methods or ",".join(available_methods()))
        seeds = parse_seeds(args.seeds)
        out = args.out or REPO / "outputs" / "compare" / time.strftime("%Y-%m-%d_%H-%M-%S")
        taken = [run_dir_name(m.label) for m in methods if (out / run_dir_name(m.label)).exists()]
        if taken:
            raise RecipeError(f"{out} already holds run(s) {', '.join(taken)}: pick a new --out.")
        out.mkdir(parents=True, exist_ok=True)
        logger = next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("logger=")), "wandb")
        shared = one_budget(overrides) + ([f"logger.group=compare-{out.name}"] if logger == "wandb" else [])
        records = []
        for compared in methods:
            for seed in seeds:
                where = out / run_dir_name(compared.label) / f"seed-{seed}"
                print(f"training {compared.label} seed {seed} -> {where}", file=sys.stderr)
                records.append(read_run(compared, seed, train_one(compared, seed, shared, out)))
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = summarize(records)
    # Every record gets every column: None (an empty cell) where a run lacks one, e.g. a failed run's per-kind rates.
    columns = list(dict.fromkeys(k for r in records for k in r))
    reports.write_csv(out / "compare.csv", columns, [{c: r.get(c) for c in columns} for r in records])
    write_markdown(rows, records, shared, out / "compare.md")
    plot(rows, out / "compare.png")
    if args.json:
        print(json.dumps({"out": str(out), "overrides": shared, "seeds": seeds, "rows": rows, "runs": records}))
    else:
        print(format_table(rows))
        print(f"\nwritten: {out / 'compare.md'}, {out / 'compare.csv'}, {out / 'compare.png'}")
    return 0 if all(r["status"] == "completed" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
