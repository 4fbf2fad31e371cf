"""Weights & Biases set-up: online with an API key, offline into the run directory without one."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from prefopt.distributed import is_main_process


def wandb_mode() -> str:
    """online when a key is configured, else offline (no network needed; `wandb sync <run dir>/wandb/...` later)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def start_wandb(cfg: DictConfig, run_dir: Path, name: str):
    """Open the W&B run before the trainer does, so it carries the resolved config, group and name.

    transformers' WandbCallback reuses an open run and adds TRL's metrics and arguments to it.
    """
    if cfg.logger.name != "wandb" or not is_main_process():
        return None
    import wandb

    return wandb.init(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.logger.group,
        tags=list(cfg.logger.tags),
        name=name,
        dir=str(run_dir),
        mode=wandb_mode(),
        config=OmegaConf.to_container(cfg, resolve=True),
    )


def finish_wandb(exit_code: int = 0) -> None:
    """Close the run even when training failed, so the next job of a multirun starts a fresh one."""
    import sys

    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].finish(exit_code=exit_code)
