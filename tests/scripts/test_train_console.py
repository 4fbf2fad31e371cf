"""The console of a training run: the project's own lines and one progress bar; third-party output in train.log."""

import re
from pathlib import Path

import pytest

from tests.conftest import FAST, run_train

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
