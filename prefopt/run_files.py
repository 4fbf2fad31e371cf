"""The files every run directory holds: config.yaml (resolved), metrics.json, model/, the log, and eval.json once
the trained model is evaluated (prefopt/evaluation)."""

from __future__ import annotations

import json
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


def evaluate_before_training(trainer, run_dir: Path) -> dict:
    """Held-out metrics of the untrained policy, computed once: a resumed run reuses the first run's numbers."""
    path = run_dir / BEFORE_TRAINING_FILE
    if path.is_file():
        return json.loads(path.read_text())
    metrics = trainer.evaluate(metric_key_prefix="eval")
    write_json(path, metrics)
    return metrics


def save_config(cfg: DictConfig, run_dir: Path) -> None:
    if not is_main_process():
        return
    OmegaConf.save(cfg, run_dir / CONFIG_FILE, resolve=True)
