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
from prefopt.run_lock import LOCK_FILE, STALE_AFTER_S, LockBeforeHydraWrites, RunLock
from tests.conftest import FAST, compose_config, run_train


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


def _files(run_dir):
    """Every file of the directory with its bytes and modification time, the lock file aside."""
    return {
        p.relative_to(run_dir): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in run_dir.rglob("*")
        if p.is_file() and p.name != LOCK_FILE
    }


def test_a_second_run_into_a_locked_directory_stops_at_once_naming_the_directory_and_pid_and_writes_nothing(run_dir):
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("- method=dpo\n")  # what the running run's Hydra wrote
    (run_dir / "train.log").write_text("[the running run's log]\n")
    before = _files(run_dir)
    with RunLock(run_dir):  # this test process plays the run that owns the directory
        started = time.time()
        result = run_train(*FAST, f"hydra.run.dir={run_dir}", check=False)
        elapsed = time.time() - started
        assert (run_dir / LOCK_FILE).exists()
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert f"{run_dir} is in use by another run: process {os.getpid()} on {socket.gethostname()}" in output
    assert "Traceback" not in output
    assert _files(run_dir) == before  # no .hydra/ rewritten, no line added to train.log, nothing new
    assert elapsed < 60, f"{elapsed:.0f} s: the refusal comes before any model is loaded"
    assert not (run_dir / LOCK_FILE).exists()


def test_a_lock_taken_before_hydra_writes_is_kept_by_the_run_and_released_when_it_ends(tmp_path, caplog):
    config = compose_config(f"hydra.run.dir={tmp_path / 'run'}")  # with Hydra's section, as on_run_start gets it
    callback = LockBeforeHydraWrites()
    callback.on_run_start(config)
    owner = json.loads((tmp_path / "run" / LOCK_FILE).read_text())
    assert owner["pid"] == os.getpid()
    with RunLock(tmp_path / "run"):  # the launcher's own lock, inside the run
        assert json.loads((tmp_path / "run" / LOCK_FILE).read_text()) == owner
    assert not (tmp_path / "run" / LOCK_FILE).exists() and "taking it over" not in caplog.text
    callback.on_run_end(config)  # released already: nothing left to do
    with RunLock(tmp_path / "run"):  # the next run takes it as usual
        assert (tmp_path / "run" / LOCK_FILE).exists()


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
