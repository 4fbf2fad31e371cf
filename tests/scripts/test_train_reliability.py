"""scripts/train.py under kills and restarts: resume, SIGTERM, Ctrl-C, a full disk, the run lock, determinism, no
secrets on disk."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prefopt.checkpoints import COMPLETE_MARKER
from prefopt.run_lock import LOCK_FILE
from tests.conftest import FAST, REPO, read_run, run_train

# Long enough to interrupt (40 steps), checkpoints every 10.
RESUMABLE = [*FAST, "train.max_steps=40", "dataset.num_train=64", "train.save_steps=10", "train.logging_steps=1"]


def _start(*overrides: str, script: Path = REPO / "scripts" / "train.py") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(script), *overrides],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As a terminal's foreground job gets it: a shell starts background jobs with SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
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
    assert (killed / LOCK_FILE).exists()  # a killed run cannot release it

    result = run_train(*RESUMABLE, "train.resume=auto", f"hydra.run.dir={killed}")
    assert "was left by a run that ended without releasing it" in result.stdout + result.stderr
    assert not (killed / LOCK_FILE).exists()
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


@pytest.mark.slow  # a killed run, its resume and an evaluation (~1 min on 2 cores); each piece is fast in tests/prefopt
def test_a_killed_run_with_a_damaged_newest_checkpoint_resumes_from_the_one_before_and_its_model_is_checked(tmp_path):
    from prefopt.checkpoints import checkpoint_damage, complete_checkpoints
    from prefopt.run_files import check_model

    run_dir = tmp_path / "run"
    run = [*FAST, "dataset.num_train=64", "train.save_steps=2", "train.save_total_limit=null", "train.logging_steps=1"]
    run.append("eval_generation.enabled=false")
    process = _start(*run, "train.max_steps=100000", f"hydra.run.dir={run_dir}")
    _wait_for(run_dir / "checkpoint-4" / COMPLETE_MARKER, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    *_, previous, newest = complete_checkpoints(run_dir)
    damaged = newest / "adapter_model.safetensors"
    with open(damaged, "r+b") as f:  # the copy back from the cluster was interrupted
        f.truncate(1000)

    result = run_train(*run, "train.max_steps=8", "train.resume=auto", f"hydra.run.dir={run_dir}")
    output = result.stdout + result.stderr
    assert f"WARNING: {newest.name} is damaged: {damaged} holds 1,000 bytes, " in output
    assert output.count(f"{newest.name} is damaged") == 1 and "Traceback" not in output
    assert f"continuing from {previous}" in output
    metrics, _ = read_run(run_dir)
    assert metrics["status"] == "completed" and max(_step_losses(run_dir)) == 8
    assert checkpoint_damage(newest) is None  # kept, then saved again when the resumed run reached its step

    # The finished run's model/ damaged the same way: named, with the copy from the final checkpoint that restores it.
    model_file = run_dir / "model" / "adapter_model.safetensors"
    with open(model_file, "r+b") as f:
        f.truncate(1000)
    evaluate = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "evaluate.py"), str(run_dir), "--force"], capture_output=True, text=True
    )
    assert evaluate.returncode == 2 and "Traceback" not in evaluate.stderr
    restore = f"cp {run_dir / 'checkpoint-8' / 'adapter_model.safetensors'} {model_file}"
    assert f"error: {model_file} holds 1,000 bytes" in evaluate.stderr and evaluate.stderr.rstrip().endswith(restore)
    subprocess.run(restore.split(), check=True)
    check_model(run_dir)


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
    assert not (run_dir / LOCK_FILE).exists()
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
    assert not (run_dir / LOCK_FILE).exists()  # a failed run releases the directory too


def test_ctrl_c_saves_a_checkpoint_and_exits_resumably(tmp_path):
    run_dir = tmp_path / "run"
    process = _start(
        *FAST,
        "train.max_steps=100000",
        "train.save_steps=100000",
        "eval_generation.enabled=false",
        f"hydra.run.dir={run_dir}",
    )
    _wait_for(run_dir / "before_training.json", process)  # the handlers are in place: training is about to start
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-3000:]
    assert "stopped by SIGINT at step" in output and "Traceback" not in output
    assert f"train.resume=auto hydra.run.dir={run_dir}" in output
    checkpoints = [p for p in run_dir.glob("checkpoint-*") if (p / COMPLETE_MARKER).exists()]
    assert len(checkpoints) == 1 and not (run_dir / "metrics.json").exists()
    assert not (run_dir / LOCK_FILE).exists()


FULL_DISK_AT_CHECKPOINT_4 = """
import errno, runpy, sys, torch
real_save = torch.save
def save(obj, f, *args, **kwargs):  # the disk fills up while the optimizer state of checkpoint-4 is written
    if "checkpoint-4" in str(f):
        with open(f, "wb") as out:
            out.write(b"PK" + bytes(1000))
        raise OSError(errno.ENOSPC, "No space left on device", str(f))
    return real_save(obj, f, *args, **kwargs)
torch.save = save
sys.argv[0] = {script!r}
runpy.run_path({script!r}, run_name="__main__")
"""


@pytest.mark.slow  # two runs (~45 CPU s); the message and the clean-up are tested fast in tests/prefopt/test_checkpoints.py
def test_a_full_disk_while_saving_keeps_the_last_complete_checkpoint_resumable(tmp_path):
    run_dir, script = tmp_path / "run", tmp_path / "full_disk_train.py"
    script.write_text(FULL_DISK_AT_CHECKPOINT_4.format(script=str(REPO / "scripts" / "train.py")))
    run = [
        *FAST,
        "train.save_steps=2",
        "train.logging_steps=1",
        "eval_before_training=false",
        "eval_generation.enabled=false",
    ]
    process = _start(*run, f"hydra.run.dir={run_dir}", script=script)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 2, output[-3000:]
    assert f"no space left on the device while saving checkpoint-4 in {run_dir}" in output
    assert f"The last complete checkpoint is {run_dir / 'checkpoint-2'}" in output and "Traceback" not in output
    assert f"train.resume=auto hydra.run.dir={run_dir}" in output
    assert not (run_dir / "checkpoint-4").exists() and not (run_dir / "metrics.json").exists()
    assert not (run_dir / LOCK_FILE).exists()

    result = run_train(*run, "train.resume=auto", f"hydra.run.dir={run_dir}")
    assert f"continuing from {run_dir / 'checkpoint-2'}" in result.stdout + result.stderr
    metrics, _ = read_run(run_dir)
    assert metrics["status"] == "completed" and max(_step_losses(run_dir)) == 4
    assert not (run_dir / LOCK_FILE).exists()


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
