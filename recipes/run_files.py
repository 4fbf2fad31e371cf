"""The files every run directory holds: config.yaml (resolved), metrics.json, model/ and the log."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from recipes.errors import RecipeError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
MODEL_DIR = "model"


def refuse_existing_run(run_dir: Path) -> None:
    """A new run never writes over an earlier one's results."""
    taken = [name for name in (CONFIG_FILE, METRICS_FILE, MODEL_DIR) if (run_dir / name).exists()]
    if taken:
        raise RecipeError(
            f"{run_dir} already holds a run ({', '.join(taken)}). Pick a new directory with hydra.run.dir=... "
            f"or leave it out to get a fresh timestamped one."
        )


def write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader never sees half a file, and a crash leaves the old one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def _finite(value):
    """NaN/inf become null: JSON has no spelling for them."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return None if isinstance(value, float) and not math.isfinite(value) else value


def save_config(cfg: DictConfig, run_dir: Path) -> None:
    OmegaConf.save(cfg, run_dir / CONFIG_FILE, resolve=True)
