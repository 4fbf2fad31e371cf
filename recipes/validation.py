"""Checks that run before anything loads, reported together in one readable block."""

from __future__ import annotations

from numbers import Number
from types import ModuleType

import torch
from omegaconf import DictConfig

from recipes.errors import RecipeError


def _positive(cfg_section: DictConfig, key: str, prefix: str, hint: str = "") -> list[str]:
    value = cfg_section.get(key)
    if isinstance(value, Number) and not isinstance(value, bool) and value <= 0:
        return [f"{prefix}.{key}={value}: must be > 0{hint}."]
    return []


def problems(cfg: DictConfig, recipe: ModuleType) -> list[str]:
    """Named cross-field rules; type and unknown-key checks come from the TRL config (recipes.trl_args)."""
    found = _positive(cfg.method, "beta", "method", " (typical DPO values are 0.01-0.5)")
    found += _positive(cfg.train, "learning_rate", "train")
    found += _positive(cfg.method, "desirable_weight", "method", " (KTO weighs desirable answers by it)")
    found += _positive(cfg.method, "undesirable_weight", "method", " (KTO weighs undesirable answers by it)")
    if not recipe.USES_REFERENCE and cfg.method.get("ref_model"):
        found.append(f"method={cfg.method.name} trains without a reference model: remove method.ref_model.")
    if cfg.precision in ("bf16", "fp16") and not torch.cuda.is_available():
        found.append(f"precision={cfg.precision} needs a GPU; on CPU use precision=auto (fp32).")
    if cfg.precision == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        found.append("precision=bf16: this GPU has no bf16 support; use precision=auto (fp16).")
    if cfg.dataset.format == "builtin" and cfg.dataset.num_eval < 1:
        found.append("dataset.num_eval must be >= 1: the launcher evaluates on held-out pairs.")
    if recipe.DATA_FORMAT == "unpaired" and cfg.train.per_device_train_batch_size < 2:
        found.append("train.per_device_train_batch_size must be >= 2 for KTO: its KL reference point mixes the batch.")
    try:
        recipe.build_config(cfg)
    except RecipeError as exc:
        title, *items = str(exc).splitlines()
        found.extend(f"{title.rstrip(':')}: {item.strip().removeprefix('- ')}" for item in items) if items else found.append(title)
    return found


def validate(cfg: DictConfig, recipe: ModuleType) -> None:
    found = problems(cfg, recipe)
    if found:
        raise RecipeError("invalid config:\n  - " + "\n  - ".join(found))
