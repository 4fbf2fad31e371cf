"""The files every run directory holds: config.yaml (resolved), metrics.json, model/, the log, and eval.json once
the trained model is evaluated (prefopt/evaluation)."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from prefopt.distributed import is_main_process
from prefopt.errors import RecipeError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
BEFORE_TRAINING_FILE = "before_training.json"
LOG_HISTORY_FILE = "log_history.json"
MODEL_DIR = "model"
EVAL_FILE = "eval.json"  # the held-out evaluation of the trained model (prefopt/evaluation)

log = logging.getLogger("train")


def refuse_existing_run(run_dir: Path, resuming: bool = False) -> None:
    """A new run never writes over an earlier one's results; a resumed one only continues an unfinished run.

    Rank 0 alone checks: the other ranks of a launch start a moment later and would see rank 0's config.yaml.
    """
    if not is_main_process():
        return
    if resuming:
        if (run_dir / METRICS_FILE).exists():
            raise RecipeError(f"{run_dir} holds a finished run ({METRICS_FILE}): there is nothing to resume.")
        return
    taken = [name for name in (CONFIG_FILE, METRICS_FILE, MODEL_DIR) if (run_dir / name).exists()]
    if taken:
        raise RecipeError(
            f"{run_dir} already holds a run ({', '.join(taken)}). Pick a new directory with hydra.run.dir=... "
            f"or leave it out to get a fresh timestamped one."
        )


def read_status(run_dir: Path) -> str | None:
    """The status in a run directory's metrics.json (completed, stopped: ..., failed), None without one."""
    path = Path(run_dir) / METRICS_FILE
    try:
        return json.loads(path.read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader never sees half a file, and a crash leaves the old one. Rank 0 only."""
    if not is_main_process():
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def _finite(value):
    """NaN/inf become null: JSON has no spelling for them."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return None if isinstance(value, float) and not math.isfinite(value) else value


def evaluate_before_training(run) -> dict:
    """Held-out metrics of the untrained policy, computed once: a resumed run reuses the first run's numbers. Empty
    for a recipe with its own training loop (online DPO measures each round against the reference instead)."""
    path = run.run_dir / BEFORE_TRAINING_FILE
    if path.is_file():
        return json.loads(path.read_text())
    metrics = run.evaluate()
    write_json(path, metrics)
    return metrics


def run_status(run) -> str:
    """completed, or why a callback (the training-health monitor) stopped the run early, or why nothing trained."""
    reasons = [c.stopped_reason for c in run.callbacks if getattr(c, "stopped_reason", None)]
    if reasons:
        return f"stopped: {reasons[0]}"
    return "completed" if run.trainer is not None else "nothing trained"


def save_model(run) -> str:
    """The trained model (or adapter) and tokenizer into model/ when training completed; returns the run's status."""
    status = run_status(run)
    if status != "completed":  # broken weights are not a model: the last complete checkpoint, if any, is what is kept
        log.error("%s: model/ not saved; complete checkpoints in %s are the last good weights", status, run.run_dir)
        return status
    run.trainer.save_model(str(run.run_dir / MODEL_DIR))
    if is_main_process():
        run.tokenizer.save_pretrained(str(run.run_dir / MODEL_DIR))
    return status


def run_metrics(run, status: str, train_metrics: dict, before: dict, after: dict, wall_time_s: float) -> dict:
    """metrics.json: what trained on what, TRL's final train and eval metrics, the held-out metrics before training."""
    cfg = run.cfg
    return {
        "method": cfg.method.name,
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "peft": cfg.peft.name,
        "beta": cfg.method.get("beta"),
        "precision": run.setup.precision,
        "status": status,
        **train_metrics,
        **after,
        "before_training": before,
        "wall_time_s": round(wall_time_s, 1),
    }


def write_metrics(run, metrics: dict) -> None:
    """metrics.json, and log_history.json: every line the trainer logged."""
    write_json(run.run_dir / METRICS_FILE, metrics)
    write_json(run.run_dir / LOG_HISTORY_FILE, {"log_history": run.history})


def record_failed_job(run_dir: Path, cfg: DictConfig, exc: Exception) -> None:
    """A failed job of a multirun sweep: logged, and its metrics.json says why (unless the run wrote its own)."""
    from prefopt.errors import RunInterrupted

    reason = str(exc) if isinstance(exc, RecipeError) else f"{type(exc).__name__}: {exc}"
    log.exception("job failed: %s", reason)
    if not isinstance(exc, RunInterrupted) and not (run_dir / METRICS_FILE).exists():
        write_json(run_dir / METRICS_FILE, {"status": "failed", "error": reason, "method": cfg.method.name})


def save_config(cfg: DictConfig, run_dir: Path) -> None:
    if not is_main_process():
        return
    OmegaConf.save(cfg, run_dir / CONFIG_FILE, resolve=True)
