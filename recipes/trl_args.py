"""Turn the composed Hydra config into keyword arguments for a TRL config class (DPOConfig, KTOConfig, ...)."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from recipes.errors import RecipeError
from recipes.models import pick_precision

# Keys of conf/method/*.yaml that are ours, not the TRL config's.
METHOD_KEYS = ("name", "recipe")


def run_name(cfg: DictConfig) -> str:
    """e.g. dpo-smollm2-135m-beta0.1: what W&B shows and what a sweep's rows are told apart by."""
    beta = cfg.method.get("beta")
    return f"{cfg.method.name}-{cfg.model.name}" + (f"-beta{beta}" if beta is not None else "")


def trl_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """cfg.train plus the method's hyperparameters, with precision and reporting chosen for this machine."""
    kwargs = OmegaConf.to_container(cfg.train, resolve=True)
    kwargs.update({k: v for k, v in OmegaConf.to_container(cfg.method, resolve=True).items() if k not in METHOD_KEYS})
    precision = pick_precision(cfg.precision)
    kwargs["bf16"] = precision == "bf16"
    kwargs["fp16"] = precision == "fp16"
    kwargs["use_cpu"] = not torch.cuda.is_available()
    kwargs["report_to"] = ["wandb"] if cfg.logger.name == "wandb" else []
    kwargs["run_name"] = run_name(cfg)
    return kwargs


def make_config(config_class: type, cfg: DictConfig):
    """Instantiate `config_class`, turning a misspelled or unsupported key into an error that names it."""
    kwargs = trl_kwargs(cfg)
    try:
        return config_class(**kwargs)
    except TypeError as exc:
        known = set(config_class.__dataclass_fields__)
        unknown = sorted(k for k in kwargs if k not in known)
        if unknown:
            raise RecipeError(
                f"{config_class.__name__} has no field(s) {', '.join(unknown)}: check conf/method/{cfg.method.name}.yaml "
                f"and the train: section of conf/train.yaml."
            ) from None
        raise
    except ValueError as exc:
        raise RecipeError(f"{config_class.__name__} rejected the config: {exc}") from None
