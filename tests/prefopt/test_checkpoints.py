"""prefopt.checkpoints: which checkpoint a resume picks, Ctrl-C and SIGTERM, a disk that fills up mid-save."""

import errno
import json
import os
import shutil
import signal
from collections import namedtuple
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from prefopt.checkpoints import (
    COMPLETE_MARKER,
    CheckpointGuard,
    no_space_error,
    resolve_resume,
    resume_command,
)
from prefopt.errors import CheckpointSaveFailed, RecipeError

Usage = namedtuple("Usage", "total used free")


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def _checkpoint(run_dir, step, complete=True, size=16):
    """A checkpoint as the trainer writes one (weights, optimizer state), marked by the guard as after a save."""
    folder = run_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    save_file({"lora_A": torch.full((4, 4), float(step))}, folder / "adapter_model.safetensors")
    (folder / "optimizer.pt").write_bytes(b"\0" * size)
    if complete:
        state = SimpleNamespace(global_step=step, is_world_process_zero=True)
        CheckpointGuard().on_save(SimpleNamespace(output_dir=str(run_dir)), state, None)
    return folder


def _truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def test_resume_auto_skips_a_newer_half_written_checkpoint(tmp_path, caplog):
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 9)
    _checkpoint(tmp_path, 20, complete=False)
    assert resolve_resume("auto", tmp_path) == tmp_path / "checkpoint-10"  # by step, not by name
    assert "checkpoint-20 was cut off while being saved" in caplog.text


def test_the_marker_records_each_file_with_its_size_and_checksum(tmp_path):
    folder = _checkpoint(tmp_path, 10)
    marker = json.loads((folder / COMPLETE_MARKER).read_text())
    assert marker["step"] == 10 and sorted(marker["files"]) == ["adapter_model.safetensors", "optimizer.pt"]
    assert marker["files"]["optimizer.pt"]["size"] == 16 and marker["files"]["optimizer.pt"]["xxh3_128"]


def test_resume_auto_falls_back_past_a_damaged_checkpoint_with_one_warning_and_deletes_nothing(tmp_path, caplog):
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 20)
    newest = _checkpoint(tmp_path, 30)
    _truncate(newest / "adapter_model.safetensors", 50)  # an interrupted copy, a full quota on the file server
    files = sorted(p.name for p in newest.iterdir())
    assert resolve_resume("auto", tmp_path) == tmp_path / "checkpoint-20"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"checkpoint-30 is damaged: {newest / 'adapter_model.safetensors'} holds 50 bytes, ")
    assert "when it was saved (cut short)" in warning
    assert f"Continuing from {tmp_path / 'checkpoint-20'}, the newest intact checkpoint" in warning
    assert sorted(p.name for p in newest.iterdir()) == files


def test_bit_rot_is_found_by_the_checksum_and_one_warning_names_every_damaged_checkpoint(tmp_path, caplog):
    _checkpoint(tmp_path, 10)
    _truncate(_checkpoint(tmp_path, 20) / "optimizer.pt", 3)
    rotted = _checkpoint(tmp_path, 30) / "adapter_model.safetensors"
    data = bytearray(rotted.read_bytes())
    data[-1] ^= 0x01  # one flipped bit in a weight: same size, a valid header
    rotted.write_bytes(bytes(data))
    assert resolve_resume("auto", tmp_path) == tmp_path / "checkpoint-10"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"checkpoint-30 is damaged: {rotted} has other bytes than when it was saved" in warning
    assert f"checkpoint-20 is damaged: {tmp_path / 'checkpoint-20' / 'optimizer.pt'} holds 3 bytes, 16 when" in warning
    assert "the damaged ones are kept" in warning


def test_resume_from_a_damaged_checkpoint_by_path_stops_naming_the_file_and_the_newest_intact_one(tmp_path):
    _checkpoint(tmp_path, 10)
    damaged = _checkpoint(tmp_path, 20)
    _truncate(damaged / "adapter_model.safetensors", 50)
    with pytest.raises(RecipeError) as raised:
        resolve_resume(str(damaged), tmp_path)
    assert str(raised.value).startswith(
        f"train.resume={damaged}: a damaged checkpoint: {damaged / 'adapter_model.safetensors'} holds 50 bytes"
    )
    assert str(raised.value).endswith(
        f"Nothing was deleted; the newest intact one is {tmp_path / 'checkpoint-10'}: "
        f"train.resume={tmp_path / 'checkpoint-10'}."
    )
    assert (damaged / "adapter_model.safetensors").exists()


def test_no_intact_checkpoint_is_an_error_naming_each_damaged_file(tmp_path):
    for step in (10, 20):
        _truncate(_checkpoint(tmp_path, step) / "adapter_model.safetensors", 50)
    with pytest.raises(RecipeError, match="no intact checkpoint in .*checkpoint-20 is damaged: .*checkpoint-10 is dam"):
        resolve_resume("auto", tmp_path)


def test_a_marker_without_a_record_still_gets_the_structure_checks(tmp_path, caplog):
    for step in (10, 20):
        (_checkpoint(tmp_path, step, complete=False) / COMPLETE_MARKER).write_text(f"step {step}\n")
    assert resolve_resume("auto", tmp_path) == tmp_path / "checkpoint-20"
    weights = tmp_path / "checkpoint-20" / "adapter_model.safetensors"
    _truncate(weights, weights.stat().st_size - 8)  # the last weight cut off
    assert resolve_resume("auto", tmp_path) == tmp_path / "checkpoint-10"
    assert f"{weights} holds {weights.stat().st_size} bytes, its safetensors header describes" in caplog.text


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
    assert error is not None and "1000 B free of 10.0 GiB; the last checkpoint took 4.4 KiB" in str(error)


def test_other_failures_are_not_taken_for_a_full_disk(tmp_path, monkeypatch):
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 20, complete=False)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(total=2**40, used=0, free=2**40))
    assert no_space_error(RuntimeError("CUDA error: an illegal memory access"), tmp_path, "R") is None
    assert no_space_error(OSError(errno.EIO, "Input/output error"), tmp_path, "R") is None
    assert (tmp_path / "checkpoint-20").exists()  # nothing removed when the failure is something else
