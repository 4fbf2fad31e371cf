"""Best-of-N preference pairs from a model: `make pairs` (or `python scripts/make_pairs.py model=tiny-random num_prompts=8`).

Hydra overrides for conf/make_pairs.yaml (`model=`, `run=`, `prompts=`, `num_samples=`, `reward.model=`, `output=`);
`--force` overwrites an existing output, `--json` prints the counts as one JSON object. `run=` samples a finished
training run's policy (on-policy pairs) instead of `model=`; `reward.model=` takes the run directory of
`make train-rm` or a Hub id/folder of a sequence classifier. Train on the output with
`make train-dpo dataset=local ARGS="dataset.path=outputs/pairs.jsonl"`.
"""

from __future__ import annotations

import prefopt.console  # isort: skip  (first: what libraries log while importing reaches the log)
import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import torch
from hydra.errors import HydraException
from omegaconf import DictConfig

from prefopt.config import compose_config
from prefopt.data.pairs import (
    builtin_prompts,
    read_prompts,
    refuse_overwrite,
    sample_pairs,
    scorer,
    verifier_scores,
    write_pairs,
)
from prefopt.errors import RecipeError
from prefopt.models import check_available, load_model, load_tokenizer, pick_precision

REPO = Path(__file__).resolve().parents[1]


def load_policy(cfg: DictConfig):
    """(model, tokenizer, what it is, dataset seed of its built-in split): a finished run's policy with `run=`
    (rebuilt as `make eval` rebuilds it), else the `model=` base model."""
    if cfg.run:
        from prefopt.evaluation import load_run

        try:
            run_cfg, tokenizer, models = load_run(Path(cfg.run))
        except RecipeError as exc:
            raise RecipeError(f"run={cfg.run}: {exc}") from None
        policy = models.policy
        if hasattr(policy, "merge_and_unload") and not getattr(policy, "is_loaded_in_4bit", False):
            # One plain model generates faster than base + adapter; 4-bit weights stay unmerged (merging rounds
            # the update away).
            policy = policy.merge_and_unload()
        split_seed = run_cfg.dataset.seed if run_cfg.dataset.get("format") == "builtin" else 0
        return policy.eval(), tokenizer, f"{run_cfg.model.name} ({run_cfg.method.name} run {cfg.run})", split_seed
    check_available(cfg.model)
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, pick_precision(cfg.precision), seed=cfg.seed).eval()
    if torch.cuda.is_available():
        model.to("cuda")
    return model, tokenizer, cfg.model.name, 0


def make_pairs(cfg: DictConfig, force: bool = False, progress: bool = True) -> dict:
    refuse_overwrite(cfg.output, force)  # before minutes of sampling, not after
    own_prompts = read_prompts(cfg.prompts, cfg.num_prompts) if cfg.prompts else None
    if own_prompts and not cfg.reward.model:
        verifier_scores(own_prompts[0], [])  # prompts without verifier fields fail here, before any model loads
    model, tokenizer, policy_name, split_seed = load_policy(cfg)
    prompts = own_prompts or builtin_prompts(cfg.num_prompts, cfg.seed, split_seed)  # the run's training prompts
    score = scorer(cfg.reward)
    pairs, stats = sample_pairs(
        model,
        tokenizer,
        prompts,
        score,
        num_samples=cfg.num_samples,
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        seed=cfg.seed,
        require_finished=cfg.require_finished,
        progress=progress,
    )
    if not pairs:
        raise RecipeError(
            f"no pairs from {stats['prompts']} prompts: {stats['ties']} tied (no finished answer scored above the "
            f"worst), {stats['too_few_distinct']} had under two distinct answers, and {stats['unfinished_answers']} "
            f"answers were cut off at max_new_tokens={cfg.max_new_tokens} (never chosen with require_finished=true). "
            f"Sample more (num_samples=), longer (max_new_tokens=), more varied (temperature=), or score finer (reward.model=)."
        )
    write_pairs(pairs, cfg.output, force=force)
    return {
        "output": str(cfg.output),
        "model": policy_name,
        "scorer": cfg.reward.model or "builtin verifier",
        **stats,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for conf/make_pairs.yaml")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    prefopt.console.setup_tool(None)  # the libraries' warnings stay off the report
    try:
        with contextlib.redirect_stdout(
            sys.stderr
        ):  # libraries print notes at import (transformers' W&B line): keep stdout for us
            result = make_pairs(compose_config(*args.overrides, config_name="make_pairs"), force=args.force)
    except (RecipeError, HydraException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        print("\n".join(f"{key:<{width}}  {value}" for key, value in result.items()))
        print(f'\ntrain on it: make train-dpo dataset=local ARGS="dataset.path={result["output"]}"')
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
