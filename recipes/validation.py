"""Cross-field checks that run before anything loads, reported together in one readable block."""

from __future__ import annotations

from types import ModuleType

import torch
from omegaconf import DictConfig

from recipes.errors import RecipeError


def problems(cfg: DictConfig, recipe: ModuleType) -> list[str]:
    found = []
    beta = cfg.method.get("beta")
    if beta is not None and beta <= 0:
        found.append(f"method.beta={beta}: must be > 0 (typical DPO values are 0.01-0.5).")
    if cfg.train.learning_rate <= 0:
        found.append(f"train.learning_rate={cfg.train.learning_rate}: must be > 0.")
    if not recipe.USES_REFERENCE and cfg.method.get("ref_model"):
        found.append(f"method={cfg.method.name} trains without a reference model: remove method.ref_model.")
    if cfg.precision in ("bf16", "fp16") and not torch.cuda.is_available():
        found.append(f"precision={cfg.precision} needs a GPU; on CPU use precision=auto (fp32).")
    if cfg.dataset.format == "builtin" and recipe.DATA_FORMAT == "paired" and cfg.dataset.num_eval < 1:
        found.append("dataset.num_eval must be >= 1: the launcher evaluates on held-out pairs.")
    return found


def validate(cfg: DictConfig, recipe: ModuleType) -> None:
    found = problems(cfg, recipe)
    if found:
        raise RecipeError("invalid config:\n  - " + "\n  - ".join(found))
