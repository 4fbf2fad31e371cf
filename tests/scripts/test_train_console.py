"""The console of a training run and of `make eval`: the project's own lines and one progress bar; third-party output
in train.log and eval.log."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST, REPO, run_train

# Lines the libraries print on every start or step (bitsandbytes, transformers, datasets' bars, W&B).
THIRD_PARTY = re.compile(r"FutureWarning|UserWarning|DeprecationWarning|gemm_4bit_forward|Flattening|^wandb:", re.M)


def test_default_console_is_short_and_third_party_output_is_in_train_log(run_dir: Path):
    result = run_train(*FAST, f"hydra.run.dir={run_dir}")
    console = result.stdout + result.stderr
    lines = [line for line in console.splitlines() if line.strip()]

    assert THIRD_PARTY.findall(console) == [], console
    assert [line for line in lines if "Warning" in line or line.startswith("WARNING")] == [
        line
        for line in lines
        if line.startswith("WARNING: train.save_steps")  # the project's own warning
    ]
    assert len(lines) < 40, console
    assert f"run directory: {run_dir}" in result.stdout
    assert "held-out evaluation (eval.json):" in result.stdout and "reward accuracy (16 pairs)" in result.stdout
    assert "dpo (beta 0.1) on tiny-random, dataset builtin, peft lora, ref base" in result.stdout
    log = (run_dir / "train.log").read_text()
    assert "FutureWarning" in log and "[py.warnings][WARNING]" in log  # transformers' deprecation, kept for reading
    assert "step 4: {'train_runtime'" in log  # the Trainer's logged dicts

    evaluated = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "evaluate.py"), str(run_dir), "--force", "--max-prompts", "4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert THIRD_PARTY.findall(evaluated.stdout + evaluated.stderr) == [], evaluated.stderr
    assert "FutureWarning" in (run_dir / "eval.log").read_text()


def test_trls_experimental_api_warning_goes_to_train_log_only(run_dir: Path):
    """ORPO, CPO and SimPO import trl.experimental, which warns on every import, naming the recipe's own line."""
    overrides = ["method=orpo", "train.max_steps=1", "eval_before_training=false", "eval_generation.enabled=false"]
    result = run_train(*FAST, *overrides, f"hydra.run.dir={run_dir}")
    assert "trl.experimental" not in result.stdout + result.stderr
    assert "TRLExperimentalWarning" in (run_dir / "train.log").read_text()


@pytest.mark.slow
def test_verbose_shows_third_party_output_on_the_console_too(run_dir: Path):
    result = run_train(*FAST, "verbose=true", f"hydra.run.dir={run_dir}")
    console = result.stdout + result.stderr
    assert "FutureWarning" in console and "Flattening the indices" in console
    log = (run_dir / "train.log").read_text()
    assert "FutureWarning" in log
    if "gemm_4bit_forward" in console:  # bitsandbytes warns at import on CPUs with AVX512-BF16
        assert "gemm_4bit_forward" in log
    assert f"run directory: {run_dir}" in result.stdout
