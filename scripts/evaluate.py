"""Evaluate a trained run against its reference: `python scripts/evaluate.py <run dir>` (or `make eval run=<run dir>`).

Options: --num-samples 4 --temperature 0.7 (sampled answers too), --max-prompts, --max-new-tokens, --batch-size,
--json (one JSON object on stdout), --force (replace an existing eval.json). Writes <run dir>/eval.json.
--prompts FILE scores your own verifiable prompts instead (kind/prompt/answer rows) into <run dir>/eval-<FILE stem>.json.
"""

from __future__ import annotations

import prefopt.console  # isort: skip  (first: what libraries log while importing reaches the log)
import argparse
import contextlib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from prefopt.errors import RecipeError
from prefopt.evaluation import (
    GenerationSettings,
    evaluate,
    format_report,
    load_run,
    log_to_wandb,
    write_eval,
)
from prefopt.evaluation.scoring import generation_metrics, read_tasks
from prefopt.run_files import EVAL_FILE, write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run directory (config.yaml + model/)")
    parser.add_argument("--max-prompts", type=int, help="held-out prompts to answer (default: from the run's config)")
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--num-samples", type=int, help="also sample this many answers per prompt")
    parser.add_argument("--temperature", type=float, help="sampling temperature (with --num-samples)")
    parser.add_argument(
        "--prompts",
        type=Path,
        help="a JSONL/CSV/Parquet file of verifiable prompts (kind, prompt, answer or n) to answer instead of the "
        "run's held-out split; writes eval-<file stem>.json",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--force", action="store_true", help="replace an existing eval.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prefopt.console.setup_tool(args.run_dir / "eval.log")  # the libraries' output: there only
    try:
        with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):  # stdout: only the JSON object
            result, path = _evaluate(args)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(json.loads(path.read_text())))  # as written: NaN already turned into null
    else:
        print(f"{args.run_dir} ({result['method']}, {result['model']}) -> {path}")
        print(format_report(result))
    return 0


def _evaluate(args: argparse.Namespace) -> tuple[dict, Path]:
    tasks = read_tasks(args.prompts) if args.prompts else None  # a bad file fails before the model loads
    path = args.run_dir / (f"eval-{args.prompts.stem}.json" if args.prompts else EVAL_FILE)
    if path.exists() and not args.force:  # before minutes of loading and answering, not after
        raise RecipeError(f"{path} exists: pass --force to replace it (make eval run={args.run_dir} ARGS=--force).")
    cfg, tokenizer, models = load_run(args.run_dir)
    settings = GenerationSettings.from_config(
        cfg.get("eval_generation"),
        max_prompts=args.max_prompts,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        num_samples=args.num_samples,
        temperature=args.temperature,
        seed=cfg.train.seed,
    )
    if tasks is not None:
        result = {
            "method": cfg.method.name,
            "model": cfg.model.name,
            "prompts": str(args.prompts),
            "settings": asdict(settings),
            "generation": generation_metrics(models, tokenizer, tasks[: args.max_prompts], settings),
            "written_by": "scripts/evaluate.py",
        }
        write_json(path, result)
        return result, path
    result = evaluate(cfg, models, tokenizer, settings)
    result["written_by"] = "scripts/evaluate.py"
    write_eval(args.run_dir, result, force=args.force)
    log_to_wandb(result, cfg, args.run_dir)
    return result, path


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
