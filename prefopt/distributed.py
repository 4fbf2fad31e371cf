"""Which process this is in a data-parallel launch (accelerate/torchrun set RANK); rank 0 owns the run directory."""

from __future__ import annotations

import logging
import os


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return rank() == 0


def quiet_other_ranks() -> None:
    """Only rank 0 writes train.log and INFO lines; the others keep warnings on the console."""
    if is_main_process():
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)


def undo_evaluation_preparation(trainer) -> None:
    """Let train() wrap the policy in DDP after an evaluate() that ran first.

    transformers' evaluation loop prepares the policy in evaluation mode (no DDP wrapper) and marks it as prepared
    whenever the accelerator holds no model yet: with no reference model to prepare (ref=precomputed, ORPO,
    SimPO, CPO). train() then skips the wrapper and each rank trains on its own shard with no gradient sync.
    """
    if trainer is None or world_size() == 1:
        return
    from prefopt.compat.accelerate import forget_prepared_model

    forget_prepared_model(trainer.accelerator, trainer.model)
