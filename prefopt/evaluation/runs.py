"""One evaluation of a run: the pair and generation metrics of policy against reference, written to eval.json;
a finished run directory loaded back for it (scripts/evaluate.py), or the launcher's step after training."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from prefopt.errors import RecipeError
from prefopt.evaluation.answers import answer_prompts, answers_section, heldout_prompts
from prefopt.evaluation.generation import GenerationSettings
from prefopt.evaluation.judges import (
    failed_section,
    judge_section,
    load_judge,
    resolve,
    uses_verifier,
    verifier_judgement,
)
from prefopt.evaluation.llm_judge import JudgeUnavailable
from prefopt.evaluation.logprobs import pair_metrics
from prefopt.evaluation.models import PolicyAndReference, _device
from prefopt.evaluation.report import format_report, log_to_wandb
from prefopt.evaluation.samples import SAMPLES_FILE, sample_rows, write_samples
from prefopt.evaluation.scoring import verifier_metrics
from prefopt.recipe import Recipe
from prefopt.run_files import EVAL_FILE, METRICS_FILE, write_json

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- one evaluation


def evaluate(
    cfg: DictConfig,
    models: PolicyAndReference,
    tokenizer,
    settings: GenerationSettings,
    pairs: dict | None = None,
    judge=None,
) -> dict:
    """Pair metrics on the run's held-out pairs (unless given; none for a method without beta, SFT); the answers of
    policy and reference to the held-out prompts of any dataset, scored by the built-in task's verifier there, and
    judged by the config's judge (prefopt.evaluation.judges).

    A reward-model or LLM judge is loaded and checked first (unless given), so a missing or wrong one fails before
    any answer is generated. A judge that fails while judging leaves a `judge` section with its `error`; the rest is
    kept. The answers go to result["samples"] (samples.jsonl, written by write_eval)."""
    from prefopt.data import load_splits

    timing = {}
    if judge is None:
        started = time.time()
        judge = load_judge(cfg)
        if judge is not None:
            timing["judge_load"] = round(time.time() - started, 2)
    judge_name = judge.name if judge is not None else resolve(cfg)
    result = {
        "method": cfg.method.name,
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "beta": cfg.method.get("beta"),
        "settings": asdict(settings),
        "pairs": pairs,
        "answers": None,
        "generation": None,
        "judge": None,
        "timing_s": timing,
    }
    if pairs is None and cfg.method.get("beta") is None:
        # Implicit rewards are beta * log(policy / reference), a preference method's; SFT's held-out NLL is eval_loss.
        result["pairs_skipped"] = (
            f"method={cfg.method.name} has no beta, so held-out pairs have no implicit rewards to score; "
            f"its held-out loss is eval_loss in {METRICS_FILE}"
        )
        log.info("no pair metrics: %s", result["pairs_skipped"])
    elif pairs is None:
        started = time.time()
        try:
            _, heldout_pairs = load_splits(cfg.dataset, "paired")
            beta, max_length = cfg.method.beta, cfg.train.get("max_length")
            metrics = pair_metrics(models, tokenizer, heldout_pairs, beta, settings.batch_size, max_length)
        except RecipeError as exc:  # an unpaired dataset (kto-mix), no pair short enough: no pairs to score
            log.warning("no pair metrics: %s", exc)
            result["pairs_skipped"] = str(exc)
        else:
            result["pairs"] = {**metrics, "source": "prefopt.evaluation"}
            result["timing_s"]["pairs"] = round(time.time() - started, 2)

    started = time.time()
    heldout = heldout_prompts(cfg, tokenizer, settings.max_prompts)
    if heldout.note:
        log.warning("no answers to judge: %s", heldout.note)
        result["answers"] = answers_section(heldout, None, settings)
        return result
    answers = answer_prompts(models, tokenizer, heldout.ids, settings)
    result["answers"] = {**answers_section(heldout, answers, settings), "samples_file": SAMPLES_FILE}
    passes = None
    if uses_verifier(cfg):
        result["generation"] = verifier_metrics(models, tokenizer, heldout.tasks, heldout.ids, answers, settings)
        passes = tuple([s[f"{who}_pass"] for s in result["generation"]["samples"]] for who in ("reference", "policy"))
    result["timing_s"]["answers"] = round(time.time() - started, 2)

    started = time.time()
    judgement = None
    if judge_name == "verifier":
        judgement = verifier_judgement(*passes)
        result["judge"] = judge_section(
            "verifier", None, judgement, answers.reference, answers.policy, seed=settings.seed
        )
    elif judge is not None:
        try:
            judgement = judge.judge(heldout.prompts, answers.reference, answers.policy)
        except JudgeUnavailable as exc:
            log.error("the judge failed: %s", exc)
            result["judge"] = failed_section(judge_name, judge.source, str(exc))
        else:
            result["judge"] = judge_section(
                judge_name,
                judge.source,
                judgement,
                answers.reference,
                answers.policy,
                verifier_passes=passes,
                seed=settings.seed,
            )
    if result["judge"] is not None:
        result["timing_s"]["judge"] = round(time.time() - started, 2)
    result["samples"] = sample_rows(heldout, answers, judge_name if judgement else None, judgement, passes)
    return result


def write_eval(run_dir: Path, result: dict, force: bool = False) -> Path:
    """eval.json with `result` (its `samples` into samples.jsonl beside it); a `harness` section written earlier
    (make eval-harness) is kept."""
    refuse_existing_eval(run_dir, force)
    path = Path(run_dir) / EVAL_FILE
    samples = result.get("samples")
    result = {k: v for k, v in result.items() if k != "samples"}
    if path.is_file() and "harness" not in result:
        with contextlib.suppress(ValueError, OSError):
            earlier = json.loads(path.read_text())
            if isinstance(earlier, dict) and "harness" in earlier:
                result = {**result, "harness": earlier["harness"]}
    if samples is not None:
        write_samples(Path(run_dir) / SAMPLES_FILE, samples)
    write_json(path, result)
    return path


def refuse_existing_eval(run_dir: Path, force: bool) -> None:
    """Fail before loading anything when eval.json would be overwritten."""
    if (Path(run_dir) / EVAL_FILE).exists() and not force:
        raise RecipeError(
            f"{Path(run_dir) / EVAL_FILE} exists: pass --force to replace it (make eval run={run_dir} ARGS=--force)."
        )


# ---------------------------------------------------------------------------------------- loading a run


def check_run(run_dir: Path, checksums: bool = True) -> DictConfig:
    """The config of a finished run whose model/ is there and intact (prefopt.run_files.check_model), else a
    RecipeError that says what is missing or damaged and what to do. Without `checksums`, sizes and headers only."""
    from prefopt.recipe import load_recipe
    from prefopt.run_files import CONFIG_FILE, check_model

    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise RecipeError(f"{run_dir} is not a run directory: no {CONFIG_FILE} in it.")
    cfg = OmegaConf.load(config_path)
    if load_recipe(cfg.method.recipe).trains_reward_model:
        raise RecipeError(
            f"{run_dir} is a reward model run (method={cfg.method.name}): it generates nothing to evaluate; its "
            f"held-out pair accuracy is in {METRICS_FILE}. Score pairs with it: "
            f'make pairs ARGS="reward.model={run_dir}".'
        )
    check_model(run_dir, checksums=checksums)
    return cfg


def load_run(run_dir: Path) -> tuple[DictConfig, object, PolicyAndReference]:
    """(config, tokenizer, policy and reference) of a finished run: model/ holds a LoRA adapter or a full model;
    the reference is the one the run trained against (its ModelSetup), loaded again."""
    from transformers import AutoModelForCausalLM

    from prefopt.adapters import quantization_config, reference_for_evaluation
    from prefopt.models import TORCH_DTYPES, load_model, load_tokenizer
    from prefopt.run import resolve_plan
    from prefopt.run_files import MODEL_DIR

    run_dir = Path(run_dir)
    cfg = check_run(run_dir)
    model_dir = run_dir / MODEL_DIR
    setup = resolve_plan(cfg).setup  # the models the run trained against
    if setup.precision != "fp32" and setup.use_cpu:
        # Trained on a GPU in bf16/fp16: evaluate in fp32 here (bf16 matmuls crawl on CPU).
        setup = dataclasses.replace(setup, precision="fp32")
    tokenizer = load_tokenizer(cfg.model)
    device = "cpu" if setup.use_cpu else "cuda"
    quantization = quantization_config(cfg.peft, setup.precision)
    if (model_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        base = load_model(cfg.model, setup.precision, quantization, seed=cfg.train.seed)
        if quantization is None:
            base = base.to(device)
        policy = PeftModel.from_pretrained(base, str(model_dir))
    else:
        dtype = TORCH_DTYPES[setup.precision]
        policy = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(device)
    reference = reference_for_evaluation(cfg, setup, None, device, quantization)
    return cfg, tokenizer, PolicyAndReference(policy, reference)


# TRL's DPOTrainer logs the same implicit rewards (tests/prefopt/evaluation/test_logprobs.py checks it): reusing its
# final evaluation saves a second pass over the held-out pairs with both models (~40 s for SmolLM2 on 2 CPU cores).
_TRL_PAIR_NAMES = {
    "reward_accuracy": "eval_rewards/accuracies",
    "reward_margin": "eval_rewards/margins",
    "chosen_reward": "eval_rewards/chosen",
    "rejected_reward": "eval_rewards/rejected",
    "chosen_logps": "eval_logps/chosen",
    "rejected_logps": "eval_logps/rejected",
}


def pairs_from_trainer_metrics(cfg: DictConfig, recipe: Recipe, metrics: dict) -> dict | None:
    """The pair metrics from metrics.json when the recipe's trainer logs them as DPO's implicit rewards, else None."""
    if not recipe.logs_pair_rewards or any(name not in metrics for name in _TRL_PAIR_NAMES.values()):
        return None
    from prefopt.data import load_splits

    loss_types = list(cfg.method.get("loss_type") or ["sigmoid"])
    pairs = {ours: metrics[theirs] for ours, theirs in _TRL_PAIR_NAMES.items()}
    pairs.update(
        {
            "num_pairs": len(load_splits(cfg.dataset, "paired")[1]),
            "skipped_pairs": 0,
            "beta": cfg.method.beta,
            # With other loss types eval_loss is that loss, not DPO's: recompute DPO's with `make eval`.
            "loss": metrics.get("eval_loss") if loss_types == ["sigmoid"] else None,
            "source": "trl (metrics.json)",
        }
    )
    return pairs


def evaluate_after_training(run) -> dict | None:
    """The launcher's last step (a prefopt.run.PreparedRun that trained): answer the held-out prompts, judge them,
    write eval.json and samples.jsonl, print before/after, log to W&B.

    The trainer's reference model (None where TRL needed no second model) becomes what the policy is measured
    against through prefopt.adapters.reference_for_evaluation. A judge that cannot be loaded or fails while judging
    does not fail the run: training's results and eval.json (without the judge's numbers) are kept, and the message
    says how to add the judge later with `make eval`."""
    from prefopt.adapters import quantization_config, reference_for_evaluation
    from prefopt.distributed import is_main_process
    from prefopt.evaluation.judges import UnavailableJudge, judge_config

    cfg, recipe, trainer, run_dir = run.cfg, run.recipe, run.trainer, Path(run.run_dir)
    if not is_main_process():
        return None
    if recipe.trains_reward_model:
        # A reward model generates nothing and has no reference: its held-out pair accuracy is in metrics.json.
        log.info("no generation evaluation: method=%s trains a reward model (accuracy: metrics.json)", cfg.method.name)
        return None
    section = cfg.get("eval_generation")
    if not section or not section.get("enabled", False):
        return None
    if getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False):
        # Sharded weights: one rank alone cannot run the model. The saved run evaluates in one process.
        log.warning("no evaluation after sharded training: run `make eval run=%s` on one device", run_dir)
        return None
    settings = GenerationSettings.from_config(section, seed=cfg.train.seed)
    started = time.time()
    try:
        judge = load_judge(cfg)
    except RecipeError as exc:
        judge = UnavailableJudge(resolve(cfg), judge_config(cfg).get("model"), str(exc))
    judge_load_s = time.time() - started
    policy = trainer.accelerator.unwrap_model(trainer.model)
    quantization = quantization_config(cfg.peft, run.setup.precision)
    ref_model = reference_for_evaluation(cfg, run.setup, run.models.reference, _device(policy), quantization)
    pairs = pairs_from_trainer_metrics(cfg, recipe, json.loads((run_dir / METRICS_FILE).read_text()))
    result = evaluate(cfg, PolicyAndReference(policy, ref_model), run.tokenizer, settings, pairs=pairs, judge=judge)
    result["written_by"] = "scripts/train.py"
    if judge is not None:
        result["timing_s"]["judge_load"] = round(judge_load_s, 2)
    write_eval(run_dir, result, force=True)
    log.info("held-out evaluation (%s):\n%s", EVAL_FILE, format_report(result, short=True))
    if (result.get("judge") or {}).get("error"):
        log.error(
            "the judge (judge=%s) failed: %s\nTraining's results and %s are kept. Add the judge later, with the "
            'judge settings of the run\'s config.yaml or new ones: make eval run=%s ARGS="--force" '
            '(e.g. ARGS="--force judge.base_url=...")',
            result["judge"]["name"],
            result["judge"]["error"],
            EVAL_FILE,
            run_dir,
        )
    log_to_wandb(result, cfg, run_dir)
    return result
