"""scripts/train.py under kills and restarts: resume, SIGTERM, determinism, no secrets on disk."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prefopt.checkpoints import COMPLETE_MARKER
from tests.conftest import FAST, REPO, read_run, run_train

# Long enough to interrupt (40 steps), checkpoints every 10.
RESUMABLE = [*FAST, "train.max_steps=40", "dataset.num_train=64", "train.save_steps=10", "train.logging_steps=1"]


def _start(*overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "train.py"), *overrides],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, f"run ended before {path} appeared:\n{process.stdout.read()[-3000:]}"
        assert time.time() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.02)


def _step_losses(run_dir: Path) -> dict[int, float]:
    history = json.loads((run_dir / "log_history.json").read_text())["log_history"]
    return {row["step"]: row["loss"] for row in history if "loss" in row}


@pytest.mark.slow  # three 40-step runs: ~80 s on 2 quiet cores
def test_killed_run_resumes_to_the_same_result_as_an_uninterrupted_one(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_train(*RESUMABLE, f"hydra.run.dir={whole}")

    process = _start(*RESUMABLE, f"hydra.run.dir={killed}")
    _wait_for(killed / "checkpoint-10" / COMPLETE_MARKER, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "metrics.json").exists()

    run_train(*RESUMABLE, "train.resume=auto", f"hydra.run.dir={killed}")
    expected, _ = read_run(whole)
    resumed, _ = read_run(killed)
    for key in ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins"):
        assert resumed[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
    assert resumed["before_training"]["eval_loss"] == expected["before_training"]["eval_loss"]
    # Steps after the last checkpoint were redone with the same data and RNG: the same losses.
    whole_losses, resumed_losses = _step_losses(whole), _step_losses(killed)
    assert min(resumed_losses) <= 11 and max(resumed_losses) == 40
    for step in range(11, 41):
        assert resumed_losses[step] == pytest.approx(whole_losses[step], rel=1e-4), step


def test_sigterm_saves_a_checkpoint_and_exits_resumably(tmp_path):
    run_dir = tmp_path / "run"
    process = _start(
        *FAST,
        "train.max_steps=100000",
        "dataset.num_train=64",
        "train.save_steps=100000",
        "train.logging_steps=1",
        f"hydra.run.dir={run_dir}",
    )
    _wait_for(run_dir / "before_training.json", process)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output[-3000:]
    assert "train.resume=auto" in output
    checkpoints = [p for p in run_dir.glob("checkpoint-*") if (p / COMPLETE_MARKER).exists()]
    assert len(checkpoints) == 1 and not (run_dir / "metrics.json").exists()
    step = int(checkpoints[0].name.split("-")[1])
    run_train(
        *FAST, f"train.max_steps={step + 2}", "dataset.num_train=64", "train.resume=auto", f"hydra.run.dir={run_dir}"
    )
    metrics, _ = read_run(run_dir)
    assert metrics["status"] == "completed" and max(_step_losses(run_dir)) == step + 2


def test_half_written_checkpoint_is_never_resumed_from(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint-5").mkdir()  # no completion marker: a save that was cut off
    result = run_train(*FAST, "train.resume=auto", f"hydra.run.dir={run_dir}", check=False)
    assert result.returncode == 2 and "no complete checkpoint" in result.stdout + result.stderr


@pytest.mark.slow  # two full runs
def test_same_config_and_seed_give_the_same_loss_curve(tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run_dir in runs:
        run_train(*FAST, "train.max_steps=6", "train.logging_steps=1", f"hydra.run.dir={run_dir}")
    assert _step_losses(runs[0]) == _step_losses(runs[1])
    assert len(_step_losses(runs[0])) == 6


def test_no_secret_from_the_environment_reaches_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    secrets = {"WANDB_API_KEY": "wandb-secret-0123456789abcdef0123456789abcdef01234567", "HF_TOKEN": "hf_secretTOKEN42"}
    run_train(*FAST, "logger=wandb", f"hydra.run.dir={run_dir}", env={**secrets, "WANDB_MODE": "offline"})
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files)
    for path in files:
        data = path.read_bytes()
        for name, value in secrets.items():
            assert value.encode() not in data, f"{name} leaked into {path.relative_to(run_dir)}"
