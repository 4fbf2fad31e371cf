"""prefopt.checkpoints: which checkpoint a resume picks, Ctrl-C and SIGTERM, a disk that fills up mid-save."""

import errno
import os
import shutil
import signal
from collections import namedtuple

import pytest

from prefopt.checkpoints import (
    COMPLETE_MARKER,
    CheckpointGuard,
    no_space_error,
    resolve_resume,
    resume_command,
)
from prefopt.errors import CheckpointSaveFailed

Usage = namedtuple("Usage", "total used free")


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def _checkpoint(run_dir, step, complete=True, size=0):
    folder = run_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "optimizer.pt").write_bytes(b"\0" * size)
    if complete:
        (folder / COMPLETE_MARKER).write_text(f"step {step}\n")
    return folder


def test_resume_auto_skips_a_newer_half_written_checkpoint(tmp_path, caplog):
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 9)
    _checkpoint(tmp_path, 20, complete=False)
    assert resolve_resume("auto", tmp_path) == tmp_path / "checkpoint-10"  # by step, not by name
    assert "checkpoint-20 was cut off while being saved" in caplog.text


def test_first_ctrl_c_asks_for_a_checkpoint_and_a_second_stops_at_once():
    signal.signal(signal.SIGINT, lambda signum, frame: None)  # should the guard not take SIGINT: a failure, not a stop
    guard = CheckpointGuard()
    os.kill(os.getpid(), signal.SIGINT)
    assert guard.stop_signal == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)


def test_sigterm_asks_for_a_checkpoint_every_time():
    guard = CheckpointGuard()
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    assert guard.stop_signal == signal.SIGTERM


def test_an_ignored_sigint_stays_ignored():
    # A shell starts background jobs so: a Ctrl-C meant for the foreground must not stop them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    guard = CheckpointGuard()
    os.kill(os.getpid(), signal.SIGINT)
    assert guard.stop_signal is None and signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_resume_command_keeps_the_run_overrides_and_replaces_resume_and_directory(tmp_path):
    command = resume_command(["method=kto", "train.resume=x", "hydra.run.dir=old", "train.max_steps=9"], tmp_path)
    assert command == (
        f"python scripts/train.py method=kto train.max_steps=9 train.resume=auto hydra.run.dir={tmp_path}"
    )


def test_no_space_names_the_last_complete_checkpoint_and_removes_the_half_written_one(tmp_path):
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 20, complete=False)
    exc = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "checkpoint-20" / "optimizer.pt"))
    error = no_space_error(exc, tmp_path, "RESUME-COMMAND")
    assert isinstance(error, CheckpointSaveFailed) and error.exit_code == 2
    message = str(error)
    assert f"no space left on the device while saving checkpoint-20 in {tmp_path}" in message
    assert "free of" in message and "Removed the half-written checkpoint-20" in message
    assert f"The last complete checkpoint is {tmp_path / 'checkpoint-10'}" in message and "RESUME-COMMAND" in message
    assert not (tmp_path / "checkpoint-20").exists() and (tmp_path / "checkpoint-10" / COMPLETE_MARKER).exists()
    assert resolve_resume("auto", tmp_path) == tmp_path / "checkpoint-10"


def test_a_save_cut_off_on_a_nearly_full_disk_counts_as_no_space(tmp_path, monkeypatch):
    # torch.save loses the errno: a short write surfaces as RuntimeError("... unexpected pos ...").
    _checkpoint(tmp_path, 10, size=4096)
    _checkpoint(tmp_path, 20, complete=False)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(total=10 * 2**30, used=10 * 2**30 - 1000, free=1000))
    error = no_space_error(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos"), tmp_path, "R")
    assert error is not None and "1000 B free of 10.0 GiB; the last checkpoint took 4.0 KiB" in str(error)


def test_other_failures_are_not_taken_for_a_full_disk(tmp_path, monkeypatch):
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 20, complete=False)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(total=2**40, used=0, free=2**40))
    assert no_space_error(RuntimeError("CUDA error: an illegal memory access"), tmp_path, "R") is None
    assert no_space_error(OSError(errno.EIO, "Input/output error"), tmp_path, "R") is None
    assert (tmp_path / "checkpoint-20").exists()  # nothing removed when the failure is something else
