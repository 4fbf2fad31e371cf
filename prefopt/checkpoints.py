"""Checkpoints that survive kills: complete ones are marked with what they hold, SIGTERM and Ctrl-C save one, a full
disk keeps the last complete one, and `train.resume=auto` finds the newest that is intact."""

from __future__ import annotations

import errno
import logging
import re
import shlex
import shutil
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from transformers import TrainerCallback

from prefopt import manifest
from prefopt.config import override_key
from prefopt.distributed import is_main_process
from prefopt.errors import CheckpointSaveFailed, RecipeError, RunInterrupted

log = logging.getLogger(__name__)

# Written after the trainer has saved everything (weights, optimizer, scheduler, RNG, trainer state), holding each
# file's name, size and checksum (prefopt/manifest.py): a checkpoint without it was cut off mid-save and is never
# resumed from, and one whose files no longer match it is damaged.
COMPLETE_MARKER = "checkpoint_complete"
_STEP = re.compile(r"^checkpoint-(\d+)$")
_NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# What writers that drop the errno say: torch.save's zip writer reports a short write as "unexpected pos".
_NO_SPACE_TEXT = ("no space left on device", "disk quota exceeded", "storagefull")
_MIB = 2**20


def _checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in run_dir.glob("checkpoint-*") if (m := _STEP.match(p.name)) and p.is_dir()]
    return sorted(found)


def step_of(checkpoint: Path) -> int:
    return int(_STEP.match(Path(checkpoint).name).group(1))


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints in `run_dir` that were fully written, oldest first."""
    return [path for _, path in _checkpoints(run_dir) if (path / COMPLETE_MARKER).is_file()]


def partial_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints newer than the newest complete one that lack the marker: saves that were cut off."""
    complete = complete_checkpoints(run_dir)
    newest = step_of(complete[-1]) if complete else -1
    return [path for step, path in _checkpoints(run_dir) if step > newest and not (path / COMPLETE_MARKER).is_file()]


def checkpoint_damage(checkpoint: Path) -> manifest.Damage | None:
    """The file of a complete checkpoint that no longer matches its marker (or fails its structure check), else None."""
    return manifest.find_damage(checkpoint, Path(checkpoint) / COMPLETE_MARKER)


def newest_intact_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of `run_dir` whose files verify."""
    return next((p for p in reversed(complete_checkpoints(run_dir)) if checkpoint_damage(p) is None), None)


def resolve_resume(resume: str | None, run_dir: Path) -> Path | None:
    """The checkpoint to continue from: None (fresh run), the newest intact one (auto), or an explicit path.

    A damaged checkpoint is named with its damaged file and kept; `auto` falls back to the newest one that verifies,
    an explicit path stops with the name of that one."""
    if not resume:
        return None
    if resume != "auto":
        path = Path(resume)
        if not (path / COMPLETE_MARKER).is_file():
            raise RecipeError(f"train.resume={resume}: not a complete checkpoint (no {COMPLETE_MARKER} file in it).")
        damage = checkpoint_damage(path)
        if damage is not None:
            intact = newest_intact_checkpoint(path.parent)
            then = (
                f"the newest intact one is {intact}: train.resume={intact}" if intact else "no intact one is next to it"
            )
            raise RecipeError(
                f"train.resume={resume}: a damaged checkpoint: {path / damage.name} {damage.problem}. Nothing was "
                f"deleted; {then}."
            )
        return path
    checkpoints = complete_checkpoints(run_dir)
    if not checkpoints:
        raise RecipeError(
            f"train.resume=auto: no complete checkpoint in {run_dir}. Resume needs the interrupted run's directory "
            f"(hydra.run.dir=<run dir>) and periodic checkpoints (train.save_strategy=steps train.save_steps=N)."
        )
    for path in partial_checkpoints(run_dir):
        log.warning("%s was cut off while being saved (no %s): it is skipped", path, COMPLETE_MARKER)
    damaged = []
    for path in reversed(checkpoints):
        damage = checkpoint_damage(path)
        if damage is None:
            break
        damaged.append(f"{path.name} is damaged: {path / damage.name} {damage.problem}")
    else:
        raise RecipeError(
            f"train.resume=auto: no intact checkpoint in {run_dir}: {'; '.join(damaged)}. Nothing was deleted: copy "
            f"the run directory again from where it was trained, or start the run again in a new directory."
        )
    if damaged:
        kept = "the damaged ones are kept" if len(damaged) > 1 else "the damaged one is kept"
        log.warning("%s. Continuing from %s, the newest intact checkpoint; %s.", "; ".join(damaged), path, kept)
    log.info("train.resume=auto: continuing from %s", path)
    return path


def resume_command(overrides: Sequence[str], run_dir: Path, checkpoint: Path | None = None) -> str:
    """The command that continues this run: its own overrides, resuming in `run_dir` from its newest intact
    checkpoint, or from `checkpoint`."""
    kept = [o for o in overrides if override_key(o) not in ("train.resume", "hydra.run.dir")]
    resume = f"train.resume={checkpoint}" if checkpoint else "train.resume=auto"
    return shlex.join(["python", "scripts/train.py", *kept, resume, f"hydra.run.dir={run_dir}"])


def resume_command_of_this_run(run_dir: Path) -> str:
    """resume_command for the Hydra job this process runs: its overrides, and its run directory (the whole run's, for
    a method in stages, whose finished stages a resumed run skips)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return resume_command([], run_dir)
    return resume_command(HydraConfig.get().overrides.task, Path(HydraConfig.get().runtime.output_dir))


def raise_if_stopped_by_signal(run) -> None:
    """After training: a SIGTERM or Ctrl-C saved a checkpoint and stopped the run; say how to continue it."""
    guard = next(c for c in run.callbacks if isinstance(c, CheckpointGuard))
    if guard.stopped_by_signal:
        raise RunInterrupted(
            f"stopped by {guard.stop_signal.name} at step {run.trainer.state.global_step} after saving a checkpoint; "
            f"continue with\n  {resume_command_of_this_run(run.run_dir)}",
            exit_code=128 + guard.stop_signal,
        )


class CheckpointGuard(TrainerCallback):
    """Marks complete checkpoints; on SIGTERM or a first Ctrl-C saves one at the end of the current step and stops.

    A second Ctrl-C stops at once (KeyboardInterrupt), without a checkpoint.
    """

    def __init__(self) -> None:
        self.stop_signal: signal.Signals | None = None
        signal.signal(signal.SIGTERM, self._request_stop)
        # A shell starts background jobs with SIGINT ignored so that Ctrl-C reaches only the foreground: keep that.
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, self._request_stop)

    @property
    def stopped_by_signal(self) -> bool:
        return self.stop_signal is not None

    def _request_stop(self, signum, frame) -> None:
        self.stop_signal = signal.Signals(signum)
        if self.stop_signal == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            log.warning("Ctrl-C: saving a checkpoint after this step, then stopping (Ctrl-C again stops at once)")
        else:
            log.warning("%s: saving a checkpoint after this step, then stopping", self.stop_signal.name)

    def on_step_end(self, args, state, control, **kwargs):
        if self.stopped_by_signal:
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        _wait_for_every_rank()  # each rank writes files of its own (rng_state_<rank>.pth, shards): all of them first
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            manifest.write(folder, folder / COMPLETE_MARKER, step=state.global_step)
        return control


def _wait_for_every_rank() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _says_no_space(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS:
            return True
        if any(text in str(exc).lower() for text in _NO_SPACE_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}" if unit != "B" else f"{size:.0f} B"
        size /= 1024
    return f"{size:.1f} TiB"


def no_space_error(exc: BaseException, run_dir: Path, resume: str) -> CheckpointSaveFailed | None:
    """The message for a save that failed because the disk is full, after removing the half-written checkpoint;
    None when `exc` is not that.

    Some writers lose the errno (torch.save raises RuntimeError "unexpected pos"): a save cut off while less space is
    free than the previous checkpoint took counts as a full disk too.
    """
    partial = partial_checkpoints(run_dir)
    complete = complete_checkpoints(run_dir)
    needed = _size(complete[-1]) if complete else 0
    usage = shutil.disk_usage(run_dir)
    if not (_says_no_space(exc) or (partial and usage.free < max(needed, 64 * _MIB))):
        return None
    where = f"saving {partial[-1].name}" if partial else "writing"
    space = f"{_human(usage.free)} free of {_human(usage.total)}"
    if needed:
        space += f"; the last checkpoint took {_human(needed)}"
    if is_main_process():
        for path in partial:  # never resumed from, and removing them gives the space back
            shutil.rmtree(path, ignore_errors=True)
    removed = f" Removed the half-written {', '.join(p.name for p in partial)}." if partial else ""
    if complete:
        then = f"The last complete checkpoint is {complete[-1]}: free space, then continue with\n  {resume}"
    else:
        then = "No complete checkpoint was saved before: free space, then start the run again."
    return CheckpointSaveFailed(f"no space left on the device while {where} in {run_dir} ({space}).{removed} {then}")


@contextmanager
def stop_cleanly_when_disk_full(run_dir: Path) -> Iterator[None]:
    """Around trainer.train(): a checkpoint save that fills the disk ends the run with what to do, not a traceback."""
    try:
        yield
    except Exception as exc:
        error = no_space_error(exc, run_dir, resume_command_of_this_run(run_dir))
        if error is None:
            raise
        raise error from exc
