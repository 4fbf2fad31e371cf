"""Train several methods with one budget and compare them: `python scripts/compare_methods.py [overrides]`.

`make compare-methods [model= dataset= peft= logger=] ARGS="train.max_steps=60 --methods dpo,orpo"`. Runs
scripts/train.py once per method (same overrides, so the same steps, batch, learning rate and data) into
<out>/<method>/, then writes compare.md and compare.png to <out> (default outputs/compare/<time>). Each row comes
from the run's eval.json (held-out pass rates, implicit reward accuracy, KL, length) and metrics.json (wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from prefopt import reports
from prefopt.errors import RecipeError
from prefopt.run_files import EVAL_FILE, METRICS_FILE

REPO = Path(__file__).resolve().parents[1]
# label -> the overrides that select it; SimPO joins when its config exists.
METHODS = {
    "dpo": ["method=dpo"],
    "dpo+sft": ["method=dpo", "method.loss_type=[sigmoid,sft]"],
    "ipo": ["method=ipo"],
    "kto": ["method=kto"],
    "orpo": ["method=orpo"],
    "simpo": ["method=simpo"],
}
COLUMNS = [  # (key, header)
    ("method", "method"),
    ("beta", "beta"),
    ("status", "status"),
    ("pass_before", "pass rate before"),
    ("pass_after", "pass rate after"),
    ("reward_accuracy", "reward accuracy"),
    ("kl", "KL to reference"),
    ("mean_length", "mean length (chars)"),
    ("wall_time_s", "wall time (s)"),
]


def available_methods() -> list[str]:
    return [
        label
        for label, overrides in METHODS.items()
        if (REPO / "conf" / "method" / f"{overrides[0].split('=')[1]}.yaml").is_file()
    ]


def run_dir_name(label: str) -> str:
    return label.replace("+", "-")


def train_one(label: str, overrides: list[str], out: Path) -> Path:
    """One scripts/train.py run; its console output goes to <out>/<method>.log."""
    run_dir = out / run_dir_name(label)
    command = [
        sys.executable,
        str(REPO / "scripts" / "train.py"),
        *METHODS[label],
        *overrides,
        f"hydra.run.dir={run_dir}",
    ]
    with (out / f"{run_dir_name(label)}.log").open("w") as console:
        subprocess.run(command, cwd=REPO, stdout=console, stderr=subprocess.STDOUT, env={**os.environ}, check=False)
    return run_dir


def read_row(label: str, run_dir: Path) -> dict:
    """The table row of one run, straight from its metrics.json and eval.json (None where absent or unreadable)."""
    metrics, evaluation = reports.read_json(run_dir / METRICS_FILE), reports.read_json(run_dir / EVAL_FILE)
    status = (metrics or {}).get("status", "failed")
    error = (metrics or {}).get("error")
    if metrics is None:
        error = f"no {METRICS_FILE}: see {run_dir.parent / (run_dir.name + '.log')}"
    elif status == "completed" and evaluation is None:
        status, error = "no eval.json", "eval_generation is off or the dataset is not the built-in one"
    return {
        "method": label,
        "run_dir": str(run_dir),
        "status": status,
        "error": error,
        "beta": (metrics or {}).get("beta"),
        "pass_before": reports.lookup(evaluation, "generation", "pass_rate", "reference"),
        "pass_after": reports.lookup(evaluation, "generation", "pass_rate", "policy"),
        "reward_accuracy": reports.lookup(evaluation, "pairs", "reward_accuracy"),
        "kl": reports.lookup(evaluation, "generation", "kl_policy_reference"),
        "mean_length": reports.lookup(evaluation, "generation", "mean_length_chars", "policy"),
        "wall_time_s": (metrics or {}).get("wall_time_s"),
    }


def format_table(rows: list[dict]) -> str:
    """A markdown table padded to line up in a terminal."""
    cells = [[header for _, header in COLUMNS]] + [
        [reports.format_cell(row[key]) for key, _ in COLUMNS] for row in rows
    ]
    return reports.markdown_table(cells)


def write_markdown(rows: list[dict], overrides: list[str], path: Path) -> None:
    lines = [
        "# Methods compared with one budget",
        "",
        f"Overrides shared by every run: `{' '.join(overrides) or '(defaults)'}`.",
        "",
        "Pass rate: greedy answers to held-out prompts that the built-in task's verifier accepts (before = the "
        "reference model, after = the trained policy). Reward accuracy: held-out pairs whose implicit reward "
        "beta * log(pi/pi_ref) ranks chosen over rejected. KL: mean over the policy's greedy answers of "
        "log pi - log pi_ref summed over answer tokens. Wall time: training and the trainer's evaluations.",
        "",
        format_table(rows),
        "",
    ]
    lines += [f"- {row['method']}: {row['status']}: {row['error']}" for row in rows if row["status"] != "completed"]
    lines += ["", "![pass rate and KL per method](compare.png)", ""]
    path.write_text("\n".join(lines))


def plot(rows: list[dict], path: Path) -> None:
    plt = reports.pyplot()
    labels = [row["method"] for row in rows]
    x = range(len(rows))

    def values(key):
        return [reports.finite_number(row[key]) or 0.0 for row in rows]

    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(rows) + 4), 3.6))
    width = 0.38
    left.bar([i - width / 2 for i in x], values("pass_before"), width, label="before (reference)")
    left.bar([i + width / 2 for i in x], values("pass_after"), width, label="after (policy)")
    left.set_ylabel("held-out pass rate")
    left.set_ylim(0, 1)
    left.legend(fontsize=8)
    right.bar(list(x), values("kl"), color="tab:gray")
    right.set_ylabel("KL(policy || reference)")
    for ax in (left, right):
        ax.set_xticks(list(x), labels, rotation=20)
    reports.save_figure(fig, path)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods",
        default=",".join(available_methods()),
        help=f"comma-separated, from {', '.join(METHODS)} (default: all with a config)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default outputs/compare/<time>)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args, overrides = parser.parse_known_args(argv)
    unknown = [o for o in overrides if o.startswith("--")]
    if unknown:
        parser.error(f"unknown option(s) {' '.join(unknown)}; Hydra overrides look like key=value")
    return args, overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    try:
        labels = [m.strip() for m in args.methods.split(",") if m.strip()]
        bad = [m for m in labels if m not in available_methods()]
        if bad or not labels:
            raise RecipeError(
                f"--methods: unknown {', '.join(bad) or '(none given)'}; choose from {', '.join(available_methods())}."
            )
        out = args.out or REPO / "outputs" / "compare" / time.strftime("%Y-%m-%d_%H-%M-%S")
        taken = [run_dir_name(m) for m in labels if (out / run_dir_name(m)).exists()]
        if taken:
            raise RecipeError(f"{out} already holds run(s) {', '.join(taken)}: pick a new --out.")
        out.mkdir(parents=True, exist_ok=True)
        logger = next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("logger=")), "wandb")
        shared = overrides + ([f"logger.group=compare-{out.name}"] if logger == "wandb" else [])
        rows = []
        for label in labels:
            print(f"training {label} -> {out / run_dir_name(label)}", file=sys.stderr)
            rows.append(read_row(label, train_one(label, shared, out)))
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_markdown(rows, shared, out / "compare.md")
    plot(rows, out / "compare.png")
    if args.json:
        print(json.dumps({"out": str(out), "overrides": shared, "rows": rows}))
    else:
        print(format_table(rows))
        print(f"\nwritten: {out / 'compare.md'}, {out / 'compare.png'}")
    return 0 if all(row["status"] == "completed" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
