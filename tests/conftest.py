"""Shared test set-up: offline Hub, offline W&B, and helpers to compose the real config and run the real launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import tempfile

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

os.environ["HF_HUB_OFFLINE"] = "1"  # fail at once instead of after ~27 s of retries
os.environ["WANDB_MODE"] = "offline"
os.environ.pop("WANDB_API_KEY", None)
os.environ["TOKENIZERS_PARALLELISM"] = "false"

# A few steps on the tiny random model: enough to see the loss move, seconds per run.
FAST = ["model=tiny-random", "logger=none", "train.max_steps=4", "dataset.num_train=32", "dataset.num_eval=16"]


def compose_config(*overrides: str):
    """The real config as the launcher sees it (hydra: interpolations resolve to a scratch run directory)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = tempfile.mkdtemp(prefix="run-")
    HydraConfig.instance().set_config(cfg)
    return cfg


def run_train(*overrides: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real entry point, in a fresh process, as `make train-<method>` runs it."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *overrides],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"train.py failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def read_run(run_dir: Path) -> tuple[dict, dict]:
    """(metrics.json, config.yaml) of a finished run."""
    return json.loads((run_dir / "metrics.json").read_text()), yaml.safe_load((run_dir / "config.yaml").read_text())


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"
