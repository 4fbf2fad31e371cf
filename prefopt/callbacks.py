"""Trainer callbacks every run gets, built from the config."""

from __future__ import annotations

from omegaconf import DictConfig

from prefopt.checkpoints import CheckpointGuard
from prefopt.health import health_callbacks
from prefopt.recipe import Recipe


def build_callbacks(cfg: DictConfig, recipe: Recipe) -> list:
    """The callbacks handed to the method's trainer; the first is always the CheckpointGuard."""
    return [CheckpointGuard(), *health_callbacks(cfg, recipe)]
