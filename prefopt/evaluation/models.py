"""The two models an evaluation compares: the trained policy and its reference."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from prefopt.errors import RecipeError


@dataclass
class PolicyAndReference:
    """The trained policy and what it is measured against."""

    policy: torch.nn.Module
    reference: torch.nn.Module | None = None  # None: the policy itself with its LoRA adapter disabled

    @contextmanager
    def reference_model(self) -> Iterator[torch.nn.Module]:
        if self.reference is not None:
            yield self.reference
            return
        if not hasattr(self.policy, "disable_adapter"):
            raise RecipeError("no reference model: the policy has no LoRA adapter to disable and none was loaded.")
        with self.policy.disable_adapter():
            yield self.policy


def _device(model: torch.nn.Module) -> torch.device:
    """Where the model's weights are (the evaluation package's modules share it)."""
    return next(model.parameters()).device
