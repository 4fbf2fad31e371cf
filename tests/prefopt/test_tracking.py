"""W&B never ends a run: an unreachable server, a rejected key and a logger failing mid-training each leave a
completed run. Traffic goes to 127.0.0.1 only (a port that refuses connections)."""

import socket
import textwrap
from pathlib import Path

import pytest

from tests.conftest import FAST, read_run, run_train

WANDB_RUN = [*FAST, "logger=wandb"]


def refused_url() -> str:
    """http://127.0.0.1:<port> where nothing listens: W&B's requests fail at once with connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def wandb_env(tmp_path: Path, key: str, **extra) -> dict:
    return {
        "WANDB_MODE": "online",
        "WANDB_API_KEY": key,
        "WANDB_BASE_URL": refused_url(),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),  # the user's W&B settings stay untouched
        "WANDB_ERROR_REPORTING": "false",
        **extra,
    }


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def assert_completed_with_one_fallback_warning(result, run_dir: Path, why: str) -> str:
    metrics, _ = read_run(run_dir)
    assert metrics["status"] == "completed"
    console = result.stdout + result.stderr
    warnings = [line for line in console.splitlines() if "Logging offline into" in line]
    assert len(warnings) == 1, console[-3000:]
    (runs,) = offline_runs(run_dir)  # where the offline files went: inside the run directory
    assert why in warnings[0] and f"`wandb sync {runs}`" in warnings[0]
    assert "Traceback" not in console
    return warnings[0]


@pytest.mark.slow
def test_unreachable_server_falls_back_to_offline_within_the_timeout(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(
        *WANDB_RUN, "logger.init_timeout_s=2", f"hydra.run.dir={run_dir}", env=wandb_env(tmp_path, "a" * 40)
    )
    warning = assert_completed_with_one_fallback_warning(result, run_dir, "could not start online within 2 s")
    assert "connection refused" in warning and "logger.init_timeout_s" in warning
    assert "W&B" in (run_dir / "train.log").read_text()


def test_a_rejected_key_falls_back_to_offline_naming_wandb_api_key(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(*WANDB_RUN, f"hydra.run.dir={run_dir}", env=wandb_env(tmp_path, "not-a-key"))
    assert_completed_with_one_fallback_warning(result, run_dir, "W&B rejected the API key in WANDB_API_KEY")
    assert "not-a-key" not in result.stdout + result.stderr + (run_dir / "train.log").read_text()


FAILING_LOG = """
    # Loaded by Python at start-up (PYTHONPATH): W&B's Run.log fails from its third call on, mid-training.
    import wandb.sdk.wandb_run

    original, calls = wandb.sdk.wandb_run.Run.log, []

    def failing_log(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(28, "No space left on device (simulated)")
        return original(self, *args, **kwargs)

    wandb.sdk.wandb_run.Run.log = failing_log
"""


@pytest.mark.slow
def test_a_logger_failing_mid_training_is_logged_once_and_training_goes_on(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(FAILING_LOG))
    run_dir = tmp_path / "run"
    result = run_train(*WANDB_RUN, "train.logging_steps=1", f"hydra.run.dir={run_dir}", env={"PYTHONPATH": str(hook)})
    metrics, _ = read_run(run_dir)
    assert metrics["status"] == "completed" and metrics["train_loss"] > 0
    assert (run_dir / "eval.json").exists() and (run_dir / "model").is_dir()
    console = result.stdout + result.stderr
    failures = [line for line in console.splitlines() if "W&B logging failed" in line]
    assert len(failures) == 1, console[-3000:]
    assert "No space left on device (simulated)" in failures[0] and "training goes on" in failures[0]
    assert len(offline_runs(run_dir)) == 1  # what was logged before the failure stays in the run directory
