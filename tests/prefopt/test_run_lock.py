"""prefopt.run_lock: one run at a time per run directory; a lock left by a crash is taken over.

The lock of a killed run, taken over by its resume, and released by failed and interrupted runs: the launcher's tests
in tests/scripts/test_train_reliability.py.
"""

import json
import os
import socket
import subprocess
import time

import pytest

from prefopt.errors import RecipeError
from prefopt.run_lock import LOCK_FILE, STALE_AFTER_S, RunLock
from tests.conftest import FAST, run_train


def _write_lock(run_dir, pid, host=None, age_s=0.0):
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "then"}))
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_second_run_into_a_locked_directory_stops_at_once_naming_the_directory_and_pid(run_dir):
    run_dir.mkdir()
    with RunLock(run_dir):  # this test process plays the run that owns the directory
        started = time.time()
        result = run_train(*FAST, f"hydra.run.dir={run_dir}", check=False)
        elapsed = time.time() - started
        assert (run_dir / LOCK_FILE).exists()
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert f"{run_dir} is in use by another run: process {os.getpid()} on {socket.gethostname()}" in output
    assert "Traceback" not in output
    assert not (run_dir / "config.yaml").exists() and not list(run_dir.glob("checkpoint-*"))
    assert elapsed < 60, f"{elapsed:.0f} s: the refusal comes before any model is loaded"
    assert not (run_dir / LOCK_FILE).exists()


def test_the_lock_names_its_owner_and_is_released_on_an_error(tmp_path):
    with pytest.raises(ZeroDivisionError), RunLock(tmp_path):
        owner = json.loads((tmp_path / LOCK_FILE).read_text())
        assert (owner["pid"], owner["host"]) == (os.getpid(), socket.gethostname())
        raise ZeroDivisionError("a failure inside the run")
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_whose_process_died_on_this_host_is_taken_over(tmp_path, caplog):
    _write_lock(tmp_path, _dead_pid())
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert "is no longer running): taking it over" in caplog.text


def test_a_live_lock_from_another_host_is_refused_and_a_silent_one_taken_over(tmp_path, caplog):
    _write_lock(tmp_path, 4242, host="node-17")
    with pytest.raises(RecipeError, match=rf"process 4242 on node-17.*if that run is gone, delete {tmp_path}"):
        RunLock(tmp_path).acquire()
    _write_lock(tmp_path, 4242, host="node-17", age_s=STALE_AFTER_S + 60)
    with RunLock(tmp_path):
        pass
    assert "has not touched it for 11 min" in caplog.text


def test_a_lock_taken_over_by_another_run_is_not_removed_by_the_first(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    _write_lock(tmp_path, 4242, host="node-17")  # what a takeover after a long stall leaves
    lock.release()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == 4242


def test_only_rank_0_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with RunLock(tmp_path):
        assert not (tmp_path / LOCK_FILE).exists()
