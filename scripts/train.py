"""Train one method: `python scripts/train.py method=dpo model=smollm2-135m` (`make train-dpo`).

Override anything Hydra knows (`method.beta=0.05 train.max_steps=20 peft=none logger=none`), or sweep with
`-m method.beta=0.05,0.1`. Writes config.yaml, metrics.json, model/, eval.json and train.log to the run directory
(a method with stages, e.g. sft-dpo, one such folder per stage inside it).
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

from prefopt.checkpoints import raise_if_stopped_by_signal, stop_cleanly_when_disk_full
from prefopt.distributed import quiet_other_ranks, undo_evaluation_preparation
from prefopt.errors import RecipeError
from prefopt.evaluation import evaluate_after_training
from prefopt.memory import dry_run
from prefopt.run import plan_run, prepare_run, resolve_plan
from prefopt.run_files import evaluate_before_training, record_failed_job, run_metrics, save_model, write_metrics
from prefopt.run_lock import RunLock
from prefopt.stages import stages
from prefopt.tracking import finish_wandb

log = logging.getLogger("train")


def train(cfg: DictConfig, run_dir: Path) -> dict:
    started = time.time()
    plan = plan_run(cfg)  # the recipe and its models, every config rule checked: a typo fails in seconds
    with RunLock(run_dir):  # a second run into this directory stops here; released however this one ends
        run = prepare_run(cfg, run_dir, plan)  # config.yaml, tokenizer, data, models, W&B, the recipe's trainer
        before = evaluate_before_training(run) if cfg.eval_before_training else {}
        undo_evaluation_preparation(run.trainer)  # else DDP skips its gradient sync when no reference was prepared
        with stop_cleanly_when_disk_full(run_dir):
            train_metrics = run.train()  # TRL's trainer.train(), or the recipe's own loop (online DPO's rounds)
        raise_if_stopped_by_signal(run)  # SIGTERM or Ctrl-C saved a checkpoint: stop here, saying how to continue
        after = run.evaluate()  # TRL's eval_ metrics on the held-out split
        status = save_model(run)  # model/ only when training completed (not stopped by the health monitor)
        metrics = run_metrics(run, status, train_metrics, before, after, wall_time_s=time.time() - started)
        write_metrics(run, metrics)  # metrics.json and log_history.json
        if status == "completed":
            evaluate_after_training(run)  # held-out answers of policy and reference, eval.json
    log.info("run directory: %s", run_dir)
    return metrics


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
    try:
        if cfg.dry_run:
            return dry_run(cfg, run_dir, resolve_plan(cfg))
        prefopt.console.log_run_summary(cfg, run_dir)
        for stage in stages(cfg, run_dir):  # one for most methods; each of method.stages in a folder of its own
            metrics = train(stage.cfg, stage.run_dir)
            finish_wandb(0)
        return sweep_objective(metrics, cfg.optimized_metric)
    except Exception as exc:
        finish_wandb(1)
        if HydraConfig.get().mode == RunMode.MULTIRUN:  # one failed job must not end the sweep: record it, go on
            record_failed_job(run_dir, cfg, exc)
            return None
        if isinstance(exc, RecipeError):
            log.error("%s", exc)
            sys.exit(exc.exit_code)
        raise
    except KeyboardInterrupt:  # a second Ctrl-C during training, or one before it starts: stop now, no checkpoint
        finish_wandb(1)
        log.error("stopped by Ctrl-C; complete checkpoints in %s, if any, resume with train.resume=auto", run_dir)
        sys.exit(130)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
