"""Evaluate a trained run against its reference: `python scripts/evaluate.py <run dir>` (or `make eval run=<run dir>`).

Options: --num-samples 4 --temperature 0.7 (sampled answers too), --max-prompts, --max-new-tokens, --batch-size,
--json (one JSON object on stdout), --force (replace an existing eval.json). Writes <run dir>/eval.json and
<run dir>/samples.jsonl. The judge is the run's (config.yaml), or what `judge=...` and `judge.<key>=...` after the run
directory say, as on a training command: `make eval run=<dir> ARGS="--force judge=reward_model judge.model=<rm run>"`.
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

from omegaconf import DictConfig, OmegaConf, open_dict

from prefopt.errors import RecipeError
from prefopt.evaluation import (
    GenerationSettings,
    check_run,
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
    parser.add_argument(
        "judge_overrides",
        nargs="*",
        metavar="judge=...",
        help="the judge, as on a training command: judge=reward_model judge.model=<dir>, judge=llm "
        "judge.base_url=<url> judge.model=<name>, judge=none (default: the run's own)",
    )
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
    return parser.parse_intermixed_args(argv)  # judge overrides may come before or after the options


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
    failed = (result.get("judge") or {}).get("error")
    if failed:
        print(
            f"error: the judge failed: {failed}\nThe answers and the other results are in {path}; run the same "
            f"command again to add the judge.",
            file=sys.stderr,
        )
        return 1
    return 0


def _evaluate(args: argparse.Namespace) -> tuple[dict, Path]:
    tasks = read_tasks(args.prompts) if args.prompts else None  # a bad file fails before the model loads
    path = args.run_dir / (f"eval-{args.prompts.stem}.json" if args.prompts else EVAL_FILE)
    if path.exists() and not args.force:  # before minutes of loading and answering, not after
        raise RecipeError(f"{path} exists: pass --force to replace it (make eval run={args.run_dir} ARGS=--force).")
    cfg = check_run(args.run_dir, checksums=False)
    judge = judge_from_overrides(cfg, args.judge_overrides)  # a bad judge fails before any model loads
    cfg, tokenizer, models = load_run(args.run_dir)
    with open_dict(cfg):
        cfg.judge = judge
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


def judge_from_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The judge section: the run's (judge=auto for a run without one), or conf/judge/<name>.yaml for `judge=<name>`,
    then each `judge.<key>=<value>`; an unknown key or a judge that fails its checks is a RecipeError, before any
    model loads."""
    from prefopt.config import compose_config
    from prefopt.evaluation.judges import judge_config, problems

    bad = [o for o in overrides if not o.startswith(("judge=", "judge."))]
    if bad:
        raise RecipeError(
            f"{' '.join(bad)}: after the run directory only judge overrides are taken (judge=<name>, judge.<key>=<value>)."
        )
    saved = judge_config(cfg)
    chosen = [o.split("=", 1)[1] for o in overrides if o.startswith("judge=")]
    name = chosen[-1] if chosen else saved.name
    try:
        judge = compose_config(f"judge={name}").judge
    except Exception as exc:  # Hydra's: no conf/judge/<name>.yaml
        raise RecipeError(f"judge={name}: no such judge; use one of auto, none, verifier, reward_model, llm.") from exc
    if name == saved.name:  # the run's own settings, where the config still has the key
        for key, value in saved.items():
            if key in judge:
                judge[key] = value
    for override in overrides:
        if override.startswith("judge."):
            key, _, value = override.removeprefix("judge.").partition("=")
            if key not in judge:
                raise RecipeError(f"judge.{key}: judge={name} has no such key; its keys are {', '.join(judge)}.")
            judge[key] = OmegaConf.from_dotlist([f"value={value}"]).value
    with open_dict(cfg):
        cfg.judge = judge
    found = problems(cfg)
    if found:
        raise RecipeError("invalid judge:\n  - " + "\n  - ".join(found))
    return judge


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
