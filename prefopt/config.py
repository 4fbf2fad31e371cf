"""Compose conf/ outside a Hydra run (tools, benchmarks, tests) exactly as the launcher composes it."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

CONF = Path(__file__).resolve().parents[1] / "conf"


def override_key(override: str) -> str:
    """The config key a Hydra override sets: `+train.seed=3` -> train.seed, `~dataset.path` -> dataset.path."""
    return override.split("=", 1)[0].lstrip("+~")


def compose_config(*overrides: str, config_name: str = "train", output_dir: str | None = None) -> DictConfig:
    """conf/<config_name>.yaml with the overrides. With `output_dir`, the config carries Hydra's own section and
    `${hydra:runtime.output_dir}` (train.output_dir) resolves to that folder, as inside a run."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=output_dir is not None)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = output_dir
        HydraConfig.instance().set_config(cfg)
    return cfg
