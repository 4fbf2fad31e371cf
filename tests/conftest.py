"""Shared test set-up: offline Hub, offline W&B, and helpers to compose the real config and run the real launcher."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from prefopt import config as recipes_config
from prefopt.model_setup import ModelSetup, resolve_model_setup
from prefopt.recipe import Recipe, load_recipe

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
    return recipes_config.compose_config(*overrides, output_dir=tempfile.mkdtemp(prefix="run-"))


def recipe_and_setup(cfg) -> tuple[Recipe, ModelSetup]:
    """The recipe a composed config names and the model set-up the launcher resolves for it."""
    recipe = load_recipe(cfg.method.recipe)
    return recipe, resolve_model_setup(cfg, recipe)


def load_script(relative_path: str):
    """A script of the repository (scripts/, bench/) imported as a module, to call its functions in-process."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem + "_script", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (and pickling) look classes' modules up there
    spec.loader.exec_module(module)
    return module


def run_train(*overrides: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real entry point, in a fresh process, as `make train-<method>` runs it."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"train.py failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def offline_wandb_data(run_dir: Path, needles: tuple[bytes, ...], timeout_s: float = 30) -> bytes:
    """The run's one offline W&B file, once it holds every needle (or the timeout passes): W&B's service process
    may finish writing it after wandb.finish() returns on a busy machine."""
    (offline,) = (Path(run_dir) / "wandb").glob("offline-run-*")
    deadline = time.monotonic() + timeout_s
    while True:
        data = next(offline.glob("*.wandb")).read_bytes()
        if all(needle in data for needle in needles) or time.monotonic() > deadline:
            return data
        time.sleep(0.2)


def read_run(run_dir: Path) -> tuple[dict, dict]:
    """(metrics.json, config.yaml) of a finished run."""
    return json.loads((run_dir / "metrics.json").read_text()), yaml.safe_load((run_dir / "config.yaml").read_text())


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def backbone_row_shapes(monkeypatch) -> list:
    """One entry per forward of a backbone on shared-prompt rows: their hidden states' shape [rows, positions, H]."""
    from prefopt import shared_prompt

    shapes, to_pair_rows = [], shared_prompt.SharedPromptRows.to_pair_rows

    def recording(self, hidden):
        shapes.append(tuple(hidden.shape))
        return to_pair_rows(self, hidden)

    monkeypatch.setattr(shared_prompt.SharedPromptRows, "to_pair_rows", recording)
    return shapes


@pytest.fixture
def chunked_head_calls(monkeypatch) -> list:
    """One entry per call of TRL's chunked log-prob head (the path the recipe's CPU head replaces)."""
    import trl.trainer.utils

    calls, chunked = [], trl.trainer.utils._ChunkedLogProbFunction

    class CountingChunkedHead:
        @staticmethod
        def apply(*args):
            calls.append(1)
            return chunked.apply(*args)

    monkeypatch.setattr(trl.trainer.utils, "_ChunkedLogProbFunction", CountingChunkedHead)
    return calls
