"""Turn the composed Hydra config into keyword arguments for a TRL config class (DPOConfig, KTOConfig, ...)."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf, open_dict

from prefopt.errors import RecipeError

if TYPE_CHECKING:
    from prefopt.model_setup import ModelSetup
    from prefopt.recipe import Recipe

# Keys of every conf/method/*.yaml and of train: that are the launcher's, not the TRL config's; a recipe adds its own
# (Recipe.own_keys).
METHOD_KEYS = ("name", "recipe", "stages")
TRAIN_KEYS = ("resume",)
# Overrides of a method's default config under which its recipe computes exactly TRL's own loss: the default's SFT
# terms off (DPO and IPO as TRL's DPOConfig defaults them, KTO without the recipe's term, ORPO with TRL's term over
# prompt and answer). The benches compare the recipes with plain TRL under them.
TRLS_OWN_LOSS = {
    "dpo": ("method.loss_type=[sigmoid]",),
    "ipo": ("method.loss_type=[ipo]", "method.loss_weights=null"),
    "kto": ("method.sft_weight=0",),
    "orpo": ("method.completion_only_loss=false",),
}


def run_name(cfg: DictConfig) -> str:
    """e.g. dpo-smollm2-135m-beta0.1: what W&B shows and what a sweep's rows are told apart by."""
    beta = cfg.method.get("beta")
    return f"{cfg.method.name}-{cfg.model.name}" + (f"-beta{beta}" if beta is not None else "")


def trl_kwargs(cfg: DictConfig, recipe: Recipe, setup: ModelSetup) -> dict[str, Any]:
    """cfg.train plus the method's hyperparameters, with precision and device from `setup` and reporting from
    the logger."""
    launcher_keys = (*METHOD_KEYS, *recipe.own_keys)
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg.train, resolve=True).items() if k not in TRAIN_KEYS}
    kwargs.update({k: v for k, v in OmegaConf.to_container(cfg.method, resolve=True).items() if k not in launcher_keys})
    kwargs["bf16"] = setup.precision == "bf16"
    kwargs["fp16"] = setup.precision == "fp16"
    kwargs["use_cpu"] = setup.use_cpu
    kwargs["report_to"] = ["wandb"] if cfg.logger.name == "wandb" else []
    kwargs["run_name"] = run_name(cfg)
    if setup.reference == "precomputed":
        kwargs["precompute_ref_log_probs"] = True  # one reference pass before training, no reference after it
    elif kwargs.get("precompute_ref_log_probs") == "auto":
        kwargs["precompute_ref_log_probs"] = False  # not resolved for a dataset (resolve_precompute): TRL's default
    return kwargs


def resolve_precompute(cfg: DictConfig, recipe: Recipe, train_rows: int, processes: int = 1) -> bool | None:
    """`method.precompute_ref_log_probs: auto` becomes true when the run trains on every row at least once, where one
    reference pass over the rows before training costs less than one per step, and in every job of a multirun sweep
    of a recipe with a reference (the jobs share one cached pass: prefopt.ref_cache); false for a few steps over many
    rows. Returns the value it set (None when the method has no such key or it is not auto)."""
    if cfg.method.get("precompute_ref_log_probs") != "auto":
        return None
    train = cfg.train
    rows_trained = train.max_steps * train.per_device_train_batch_size * train.gradient_accumulation_steps * processes
    precompute = train.max_steps <= 0 or rows_trained >= train_rows or (recipe.uses_reference and _in_sweep())
    with open_dict(cfg):
        cfg.method.precompute_ref_log_probs = precompute
    return precompute


def _in_sweep() -> bool:
    """This process is one job of a Hydra multirun (`-m`, `make sweep-beta`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def make_config(recipe: Recipe, cfg: DictConfig, setup: ModelSetup):
    """Instantiate the recipe's TRL config class after checking every key against it; all problems in one block."""
    config_class = recipe.config_class
    kwargs = trl_kwargs(cfg, recipe, setup)
    problems = _field_problems(config_class, kwargs, cfg.method.name)
    if problems:
        raise RecipeError(f"{config_class.__name__}:\n  - " + "\n  - ".join(problems))
    try:
        return config_class(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{config_class.__name__} rejected the config: {exc}") from None


def _where(key: str, method_name: str) -> str:
    return (
        f"conf/method/{method_name}.yaml" if key in ("beta", "loss_type") else "the train: section of conf/train.yaml"
    )


def _field_problems(config_class: type, kwargs: dict[str, Any], method_name: str) -> list[str]:
    """Unknown keys, values of the wrong type, and choices TRL would only reject at the first loss computation."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    problems = []
    for key, value in kwargs.items():
        if key not in fields:
            problems.append(
                f"no field '{key}' (from conf/method/{method_name}.yaml or conf/train.yaml): remove or rename it."
            )
            continue
        expected = _scalar_types(hints[key])
        if expected and value is not None and not _matches(value, expected):
            names = "/".join(t.__name__ for t in expected)
            problems.append(f"{key}={value!r}: expected {names} ({_where(key, method_name)}).")
        allowed = _choices(fields[key])
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if allowed and v not in allowed]
        if bad:
            problems.append(
                f"{key}={value!r}: {', '.join(map(repr, bad))} unknown to TRL; one of {', '.join(allowed)}."
            )
    return problems


def _scalar_types(hint) -> tuple[type, ...]:
    """The scalar types a field accepts (int also passes for float), or () when the hint is not a plain scalar."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    scalars = tuple(a for a in args if a in (int, float, bool, str))
    if len(scalars) != len([a for a in args if a is not type(None)]):
        return ()
    return scalars + ((int,) if float in scalars else ())


def _matches(value, expected: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # bool is an int subclass; max_steps=true is still a mistake
        return bool in expected
    return isinstance(value, expected)


def _choices(field: dataclasses.Field) -> list[str]:
    """Allowed values as TRL declares them: a `choices` list, or the quoted names after 'Possible values are'."""
    if field.metadata.get("choices"):
        return list(field.metadata["choices"])
    help_text = field.metadata.get("help", "")
    if "Possible values are" in help_text:
        return re.findall(r"`'(\w+)'`", help_text.split("Possible values are", 1)[1].split(".", 1)[0])
    return []
