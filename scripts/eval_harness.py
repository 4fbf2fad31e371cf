"""A run's policy and reference on lm-evaluation-harness tasks: `python scripts/eval_harness.py <run dir> --tasks
ifeval,gsm8k` (or `make eval-harness run=<run dir> tasks=ifeval,gsm8k limit=100`); tasks may be local task YAMLs.

Options: --limit N (examples per task), --num-fewshot, --batch-size (or auto), --apply-chat-template, --all-tasks
(a group's subtasks in the table too), --json (one JSON object on stdout), --force (replace these tasks' results).
Writes the `harness` section of <run dir>/eval.json and keeps every other section.
"""

from __future__ import annotations

import prefopt.console  # isort: skip  (first: what libraries log while importing reaches the log)
import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from prefopt.errors import RecipeError
from prefopt.evaluation import check_run, load_run, log_to_wandb
from prefopt.evaluation.harness import (
    SECTION,
    HarnessSettings,
    check_task_data,
    format_harness,
    refuse_existing_tasks,
    resolve_tasks,
    run_harness,
    write_harness,
)
from prefopt.run_files import EVAL_FILE


def _batch_size(value: str) -> int | str:
    return value if value.startswith("auto") else int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run directory (config.yaml + model/)")
    parser.add_argument(
        "--tasks", required=True, help="comma-separated harness task names, task YAML files and folders"
    )
    parser.add_argument("--limit", type=int, help="examples per task (default: all)")
    parser.add_argument("--num-fewshot", type=int, help="few-shot examples (default: each task's own)")
    parser.add_argument("--batch-size", type=_batch_size, default=8, help="an integer, or auto (default: 8)")
    parser.add_argument("--apply-chat-template", action="store_true", help="prompts through the tokenizer's template")
    parser.add_argument("--bootstrap-iters", type=int, default=100000, help="for metrics without closed-form stderr")
    parser.add_argument("--all-tasks", action="store_true", help="a group's subtasks in the table too")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--force", action="store_true", help="replace earlier harness results of these tasks")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prefopt.console.setup_tool(args.run_dir / "eval.log")  # the libraries' output: there only
    settings = HarnessSettings(
        limit=args.limit,
        num_fewshot=args.num_fewshot,
        batch_size=args.batch_size,
        apply_chat_template=args.apply_chat_template,
        bootstrap_iters=args.bootstrap_iters,
    )
    # With --json the one object is all of stdout: libraries that print (transformers' W&B notice) go to stderr.
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        try:
            code = _evaluate(args, settings)
        except RecipeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.json:
        # As written: NaN already turned into null.
        print(json.dumps({SECTION: json.loads((args.run_dir / EVAL_FILE).read_text())[SECTION]}))
    return code


def _evaluate(args: argparse.Namespace, settings: HarnessSettings) -> int:
    check_run(args.run_dir, checksums=False)  # what is missing or cut short, before the seconds the task index takes
    tasks = resolve_tasks(args.tasks)
    refuse_existing_tasks(args.run_dir, tasks.names, args.force)
    check_task_data(tasks)
    cfg, tokenizer, models = load_run(args.run_dir)
    section = run_harness(models, tokenizer, tasks, settings)
    for entry in section.values():
        entry["written_by"] = "scripts/eval_harness.py"
    write_harness(args.run_dir, section)
    log_to_wandb({SECTION: section}, cfg, args.run_dir, job_type="eval-harness")
    if not args.json:
        print(f"{args.run_dir} ({cfg.method.name}, {cfg.model.name}) -> {args.run_dir / EVAL_FILE} [{SECTION}]")
        print(format_harness(section, all_tasks=args.all_tasks))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
