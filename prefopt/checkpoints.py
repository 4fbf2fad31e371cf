"""Checkpoints that survive kills: complete ones are marked, SIGTERM saves one, `train.resume=auto` finds the newest."""

from __future__ import annotations

import logging
import re
import signal
from pathlib import Path

from transformers import TrainerCallback

from prefopt.errors import RecipeError

log = logging.getLogger(__name__)

# Written after the trainer has saved everything (weights, optimizer, scheduler, RNG, trainer state): a
# checkpoint without it was cut off mid-save and is never resumed from.
COMPLETE_MARKER = "checkpoint_complete"
_STEP = re.compile(r"^checkpoint-(\d+)$")


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints in `run_dir` that were fully written, oldest first."""
    found = [(int(m.group(1)), p) for p in run_dir.glob("checkpoint-*") if (m := _STEP.match(p.name))]
    return [path for _, path in sorted(found) if (path / COMPLETE_MARKER).is_file()]


def resolve_resume(resume: str | None, run_dir: Path) -> Path | None:
    """The checkpoint to continue from: None (fresh run), the newest complete one (auto), or an explicit path."""
    if not resume:
        return None
    if resume != "auto":
        path = Path(resume)
        if not (path / COMPLETE_MARKER).is_file():
            raise RecipeError(f"train.resume={resume}: not a complete checkpoint (no {COMPLETE_MARKER} file in it).")
        return path
    checkpoints = complete_checkpoints(run_dir)
    if not checkpoints:
        raise RecipeError(
            f"train.resume=auto: no complete checkpoint in {run_dir}. Resume needs the interrupted run's directory "
            f"(hydra.run.dir=<run dir>) and periodic checkpoints (train.save_strategy=steps train.save_steps=N)."
        )
    return checkpoints[-1]


class CheckpointGuard(TrainerCallback):
    """Marks complete checkpoints, and on SIGTERM saves one at the end of the current step and stops."""

    def __init__(self) -> None:
        self.stopped_by_signal = False
        signal.signal(signal.SIGTERM, self._request_stop)

    def _request_stop(self, signum, frame) -> None:
        log.warning("SIGTERM: saving a checkpoint after this step, then stopping")
        self.stopped_by_signal = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.stopped_by_signal:
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            (folder / COMPLETE_MARKER).write_text(f"step {state.global_step}\n")
        return control
