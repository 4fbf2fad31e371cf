"""One run at a time in a run directory: `run.lock` names the process that owns it, and goes when that run ends.

A lock left by a crash is taken over with a warning: its process is gone (same host), or its heartbeat stopped
(another host, e.g. a requeued SLURM job or a restarted pod, whose process cannot be looked up from here).

A single run takes the lock before Hydra writes into the directory (LockBeforeHydraWrites, a Hydra callback in
conf/train.yaml), so that a refused run leaves it as it was: no `.hydra/` rewritten, no line added to train.log.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from prefopt.distributed import is_main_process
from prefopt.errors import RecipeError

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
HEARTBEAT_S = 30.0  # the owner touches the lock this often
STALE_AFTER_S = 600.0  # a lock untouched this long belongs to no live run (a wide margin over clock skew and stalls)
_held: dict[Path, RunLock] = {}  # the locks this process holds, by lock file


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _exit_on_sigterm(signum, frame) -> None:
    # Before training starts there is nothing to checkpoint: unwind, so that the lock is released on the way out.
    raise SystemExit(128 + signum)


class RunLock:
    """`with RunLock(run_dir):` holds the run directory for this process (rank 0; other ranks share rank 0's)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.held = False
        self._holder: RunLock | None = None  # the lock of the same directory this process took first
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def __enter__(self) -> RunLock:
        if is_main_process():
            self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        holder = _held.get(self._key())
        if holder is not None:  # taken before Hydra wrote into the directory: this run goes on holding it
            self._holder, self.held = holder, True
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)  # a stage's folder inside the run directory is new
        for _ in range(3):  # a lock found stale is removed and the create tried again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%c")}, f)
            self.held = True
            _held[self._key()] = self
            self._heartbeat = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
            self._heartbeat.start()
            try:
                if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                    signal.signal(signal.SIGTERM, _exit_on_sigterm)
            except ValueError:  # not the main thread: signals are not ours to handle
                pass
            return
        raise RecipeError(f"{self.path}: another run took this directory at the same moment; pick another one.")

    def _owner(self) -> dict | None:
        # The owner writes its line right after creating the file: give a reader that came in between a moment.
        for _ in range(10):
            try:
                owner = json.loads(self.path.read_text())
                if isinstance(owner, dict) and isinstance(owner.get("pid"), int):
                    return owner
            except FileNotFoundError:
                return {}
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        return None

    def _take_over_if_stale(self) -> None:
        owner = self._owner()
        if owner == {}:  # released between the create and the read
            return
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return
        here = socket.gethostname()
        if owner is None:
            reason = "it names no process"
        elif owner.get("host") == here and (owner["pid"] == os.getpid() or not _alive(owner["pid"])):
            reason = f"process {owner['pid']} on this host is no longer running"
        elif age > STALE_AFTER_S:
            reason = f"process {owner['pid']} on {owner.get('host')} has not touched it for {age / 60:.0f} min"
        else:
            gone = "" if owner.get("host") == here else f"; if that run is gone, delete {self.path}"
            raise RecipeError(
                f"{self.run_dir} is in use by another run: process {owner['pid']} on {owner.get('host')}, "
                f"started {owner.get('started')}. Wait for it to end, or pick another directory with "
                f"hydra.run.dir=...{gone}."
            )
        log.warning("%s was left by a run that ended without releasing it (%s): taking it over", self.path, reason)
        self.path.unlink(missing_ok=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def _key(self) -> Path:
        return self.path.resolve()

    def release(self) -> None:
        if self._holder is not None:
            holder, self._holder, self.held = self._holder, None, False
            holder.release()
            return
        self._stop.set()
        if not self.held:
            return
        self.held = False
        _held.pop(self._key(), None)
        try:
            if signal.getsignal(signal.SIGTERM) is _exit_on_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except ValueError:
            pass
        try:
            owner = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():  # still ours
            self.path.unlink(missing_ok=True)


class LockBeforeHydraWrites(Callback):
    """Takes the run directory's lock before Hydra writes `.hydra/` and sets up train.log there (hydra.callbacks in
    conf/train.yaml); a refused run stops with exit status 2, the directory as it was.

    Single runs only: the jobs of a sweep each take the lock of their own new directory when the job starts. The
    lock is released when the run ends (the launcher's RunLock, on_run_end, or at exit, whichever comes first)."""

    def __init__(self) -> None:
        self.lock: RunLock | None = None

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if not is_main_process():
            return
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(config)  # for ${hydra:...} in hydra.run.dir; run_job sets it again
        run_dir = Path(str(OmegaConf.select(config, "hydra.run.dir"))).absolute()
        run_dir.mkdir(parents=True, exist_ok=True)  # what Hydra does next
        self.lock = RunLock(run_dir)
        try:
            self.lock.acquire()
        except RecipeError as exc:
            print(f"ERROR: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(exc.exit_code) from None  # Hydra turns an Exception raised here into a warning
        atexit.register(self.lock.release)

    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        if self.lock is not None:
            self.lock.release()
