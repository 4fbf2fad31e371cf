"""Train one preference-optimization recipe: `python scripts/train.py method=dpo model=smollm2-135m`.

Override anything Hydra knows (`method.beta=0.05 train.max_steps=20 peft=none logger=none`), or sweep
with `-m method.beta=0.05,0.1`. Writes config.yaml, metrics.json, model/ and train.log to the run directory.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import prefopt.console  # isort: skip  (first: what libraries log while importing reaches train.log)
import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from transformers import set_seed

from prefopt.adapters import build_policy_and_reference, quantization_config
from prefopt.callbacks import build_callbacks
from prefopt.checkpoints import resolve_resume, resume_command, stop_cleanly_when_disk_full
from prefopt.data import load_splits
from prefopt.data.cache import on_disk
from prefopt.data.checks import drop_unusable
from prefopt.data.report import log_summary
from prefopt.distributed import is_main_process, quiet_other_ranks, undo_evaluation_preparation
from prefopt.errors import RecipeError, RunInterrupted
from prefopt.evaluation import evaluate_after_training
from prefopt.memory import dry_run, fit_hardware
from prefopt.model_setup import resolve_model_setup
from prefopt.models import check_available, load_tokenizer
from prefopt.recipe import load_recipe
from prefopt.run_files import (
    LOG_HISTORY_FILE,
    METRICS_FILE,
    MODEL_DIR,
    evaluate_before_training,
    record_model,
    refuse_existing_run,
    save_config,
    write_json,
)
from prefopt.run_lock import RunLock
from prefopt.tracking import finish_wandb, start_wandb
from prefopt.trl_args import resolve_precompute, run_name
from prefopt.validation import check_sections, validate

log = logging.getLogger("train")


def train(cfg: DictConfig, run_dir: Path) -> dict:
    started = time.time()
    check_sections(cfg)
    recipe = load_recipe(cfg.method.recipe)
    setup = resolve_model_setup(cfg, recipe)  # policy, reference, adapters, precision, processes: decided once
    fit_hardware(cfg, recipe, setup)  # hardware=24gb|40gb|80gb: micro-batch, accumulation, checkpointing
    validate(cfg, recipe, setup)
    with RunLock(run_dir):  # a second run into this directory stops here; released however this one ends
        return _train(cfg, run_dir, recipe, setup, started)


def _train(cfg: DictConfig, run_dir: Path, recipe, setup, started: float) -> dict:
    checkpoint = resolve_resume(cfg.train.resume, run_dir)
    refuse_existing_run(run_dir, resuming=checkpoint is not None)
    check_available(cfg.model)
    save_config(cfg, run_dir)

    tokenizer = load_tokenizer(cfg.model)
    # The data before the weights: data that does not fit the method (SFT rows for DPO, ...) stops in seconds.
    train_data, eval_data = load_splits(cfg.dataset, recipe.data_format)
    log.info("data: %d train / %d eval rows (%s)", len(train_data), len(eval_data), recipe.data_format)
    log_summary(train_data, eval_data, tokenizer, cfg.train.max_length)
    train_data, eval_data = drop_unusable(train_data, eval_data, tokenizer, cfg.train.max_length)
    if resolve_precompute(cfg, len(train_data), setup.processes) is not None:  # method.precompute_ref_log_probs=auto
        save_config(cfg, run_dir)
    train_data, eval_data = on_disk(train_data, "train"), on_disk(eval_data, "eval")  # lets TRL's caches persist
    quant_config = quantization_config(cfg.peft, setup.precision)
    model, ref_model, peft_config = build_policy_and_reference(cfg, setup, quant_config)

    start_wandb(cfg, run_dir, run_name(cfg))
    set_seed(cfg.train.seed)  # LoRA initialization, dropout and data order: the same run for the same seed
    callbacks = build_callbacks(cfg, recipe)
    trainer = recipe.build_trainer(
        cfg,
        args=recipe.build_config(cfg, setup),
        model=model,
        ref_model=ref_model,
        tokenizer=tokenizer,
        train_dataset=train_data,
        eval_dataset=eval_data,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    before = evaluate_before_training(trainer, run_dir) if cfg.eval_before_training else {}
    undo_evaluation_preparation(trainer)  # else DDP skips its gradient sync when no reference model was prepared
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    resume = resume_command(overrides, run_dir)
    with stop_cleanly_when_disk_full(run_dir, resume):
        train_metrics = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None).metrics
    guard = callbacks[0]
    if guard.stopped_by_signal:
        raise RunInterrupted(
            f"stopped by {guard.stop_signal.name} at step {trainer.state.global_step} after saving a checkpoint; "
            f"continue with\n  {resume}",
            exit_code=128 + guard.stop_signal,
        )
    after = trainer.evaluate(metric_key_prefix="eval")
    status = run_status(callbacks)
    if status == "completed":
        trainer.save_model(str(run_dir / MODEL_DIR))
        if is_main_process():
            tokenizer.save_pretrained(str(run_dir / MODEL_DIR))
        record_model(run_dir, trainer.state.global_step)  # model/manifest.json: what make eval/merge verify
    else:  # broken weights are not a model: what is kept is the last complete checkpoint, if one was saved
        log.error("%s: model/ not saved; complete checkpoints in %s are the last good weights", status, run_dir)

    metrics = {
        "method": cfg.method.name,
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "peft": cfg.peft.name,
        "beta": cfg.method.get("beta"),
        "precision": setup.precision,
        "status": status,
        **train_metrics,
        **after,
        "before_training": before,
        "wall_time_s": round(time.time() - started, 1),
    }
    write_json(run_dir / METRICS_FILE, metrics)
    write_json(run_dir / LOG_HISTORY_FILE, {"log_history": trainer.state.log_history})
    if is_main_process() and status == "completed":
        evaluate_after_training(cfg, recipe, setup, trainer, ref_model, tokenizer, run_dir)  # eval.json
    log.info("run directory: %s", run_dir)
    return metrics


def run_status(callbacks: list) -> str:
    """completed, or why a callback (the training-health monitor) stopped the run early."""
    reasons = [c.stopped_reason for c in callbacks if getattr(c, "stopped_reason", None)]
    return f"stopped: {reasons[0]}" if reasons else "completed"


def sweep_objective(metrics: dict, name: str) -> float:
    """What a Hydra sweeper optimizes (Optuna's direction is set in conf/hparams_search/): metrics[optimized_metric]."""
    value = metrics.get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        numeric = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        raise RecipeError(
            f"optimized_metric={name}: this run's metrics.json has no such number (method {metrics.get('method')} "
            f"reports {', '.join(numeric)}). Set optimized_metric to one of them."
        )
    return float(value)


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    prefopt.console.setup(cfg)  # third-party output: train.log only, unless verbose=true
    quiet_other_ranks()
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        if cfg.dry_run:
            return dry_run(cfg, run_dir)
        prefopt.console.log_run_summary(cfg, run_dir)
        metrics = train(cfg, run_dir)
        finish_wandb(0)
        return sweep_objective(metrics, cfg.optimized_metric)
    except Exception as exc:
        finish_wandb(1)
        reason = str(exc) if isinstance(exc, RecipeError) else f"{type(exc).__name__}: {exc}"
        if multirun:
            # One failed job must not end the sweep: record it and let the others run.
            log.exception("job failed: %s", reason)
            if not isinstance(exc, RunInterrupted) and not (run_dir / METRICS_FILE).exists():
                write_json(run_dir / METRICS_FILE, {"status": "failed", "error": reason, "method": cfg.method.name})
            return None
        if isinstance(exc, RecipeError):
            log.error("%s", reason)
            sys.exit(exc.exit_code)
        raise
    except KeyboardInterrupt:  # a second Ctrl-C during training, or one before it starts: stop now, no checkpoint
        finish_wandb(1)
        log.error("stopped by Ctrl-C; complete checkpoints in %s, if any, resume with train.resume=auto", run_dir)
        sys.exit(130)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
