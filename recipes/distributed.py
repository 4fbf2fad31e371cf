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
