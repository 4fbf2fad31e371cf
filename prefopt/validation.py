"""Checks that run before anything loads, reported together in one readable block."""

from __future__ import annotations

import logging
from numbers import Number
from pathlib import Path

import torch
from omegaconf import DictConfig

from prefopt.errors import RecipeError
from prefopt.evaluation.judges import problems as judge_problems
from prefopt.model_setup import ModelSetup
from prefopt.recipe import Recipe
from prefopt.trl_args import make_config

log = logging.getLogger(__name__)


def _positive(cfg_section: DictConfig, key: str, prefix: str, hint: str = "") -> list[str]:
    value = cfg_section.get(key)
    if _is_number(value) and value <= 0:
        return [f"{prefix}.{key}={value}: must be > 0{hint}."]
    return []


SECTIONS = ("method", "model", "dataset", "peft", "logger", "train")


def check_sections(cfg: DictConfig) -> None:
    """Each group and the train: section is a mapping (an override such as `train=3` replaces it with a value)."""
    bad = [f"{name}={cfg.get(name)!r}" for name in SECTIONS if not isinstance(cfg.get(name), DictConfig)]
    if bad:
        raise RecipeError(
            f"invalid config: {', '.join(bad)} must be a config group or section (e.g. method=dpo, "
            f"train.max_steps=20); the options are the files in conf/<group>/."
        )


def _is_number(value) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def _peft_problems(peft: DictConfig) -> list[str]:
    if peft.name == "none":
        return []
    found = []
    if not (isinstance(peft.get("r"), int) and not isinstance(peft.get("r"), bool) and peft.r > 0):
        found.append(f"peft.r={peft.get('r')!r}: must be a positive whole number (LoRA rank, e.g. 16).")
    if not (_is_number(peft.get("lora_alpha")) and peft.lora_alpha > 0):
        found.append(f"peft.lora_alpha={peft.get('lora_alpha')!r}: must be a number > 0 (usually 2 x r).")
    if not (_is_number(peft.get("lora_dropout")) and 0 <= peft.lora_dropout < 1):
        found.append(f"peft.lora_dropout={peft.get('lora_dropout')!r}: must be in [0, 1).")
    return found


def _step_problems(train: DictConfig) -> list[str]:
    """How long the run is and when it evaluates: settings TRL accepts that do nothing or train nothing."""
    found = []
    steps, epochs = train.get("max_steps"), train.get("num_train_epochs")
    if _is_number(steps) and steps == 0:
        found.append(
            "train.max_steps=0 trains nothing: set the number of optimizer steps (e.g. train.max_steps=30), or "
            "train.max_steps=-1 to train train.num_train_epochs over the data."
        )
    elif _is_number(steps) and steps < 0 and _is_number(epochs) and epochs <= 0:
        found.append(
            f"train.max_steps={steps} trains train.num_train_epochs={epochs} epochs, i.e. nothing: set "
            f"train.num_train_epochs > 0 (e.g. 1), or a number of steps with train.max_steps=N."
        )
    strategy = str(train.get("eval_strategy"))
    if train.get("eval_steps") is not None and strategy != "steps":
        found.append(
            f"train.eval_steps={train.eval_steps} has no effect with train.eval_strategy={strategy}: add "
            f"train.eval_strategy=steps to evaluate every {train.eval_steps} steps, or drop train.eval_steps."
        )
    return found


def checkpoint_warnings(train: DictConfig) -> list[str]:
    """Valid settings that leave a run without checkpoints to resume from until it ends."""
    steps, every = train.get("max_steps"), train.get("save_steps")
    if str(train.get("save_strategy")) != "steps" or not (_is_number(steps) and _is_number(every)):
        return []
    if steps > 0 and every >= 1 and every >= steps:
        # The trainer still saves one at the last step; a kill before that restarts the run from step 0.
        return [
            f"train.save_steps={every} is not below train.max_steps={steps}: the only checkpoint is the one at the "
            f"end, so a run killed before step {steps} cannot resume. To checkpoint along the way set "
            f"train.save_steps to less than {steps} (e.g. train.save_steps={max(1, steps // 3)})."
        ]
    return []


def problems(cfg: DictConfig, recipe: Recipe, setup: ModelSetup) -> list[str]:
    """Named cross-field rules; type and unknown-key checks come from the TRL config (prefopt.trl_args)."""
    found = _positive(cfg.method, "beta", "method", " (typical DPO values are 0.01-0.5)")
    found += _positive(cfg.train, "learning_rate", "train")
    found += _positive(cfg.method, "desirable_weight", "method", " (KTO weighs desirable answers by it)")
    found += _positive(cfg.method, "undesirable_weight", "method", " (KTO weighs undesirable answers by it)")
    if not recipe.uses_reference and cfg.method.get("ref_model"):
        found.append(f"method={cfg.method.name} trains without a reference model: remove method.ref_model.")
    found += _reference_problems(cfg, recipe, setup)
    if recipe.config_problems is not None:
        found += recipe.config_problems(cfg, recipe, setup)
    if cfg.precision in ("bf16", "fp16") and not torch.cuda.is_available():
        found.append(f"precision={cfg.precision} needs a GPU; on CPU use precision=auto (fp32).")
    if cfg.precision == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        found.append("precision=bf16: this GPU has no bf16 support; use precision=auto (fp16).")
    found += _peft_problems(cfg.peft)
    found += _step_problems(cfg.train)
    if cfg.dataset.format == "builtin" and _is_number(cfg.dataset.num_eval) and cfg.dataset.num_eval < 1:
        found.append("dataset.num_eval must be >= 1: the launcher evaluates on held-out pairs.")
    found += judge_problems(cfg)
    batch = cfg.train.get("per_device_train_batch_size")
    if recipe.data_format == "unpaired" and _is_number(batch) and batch < 2:
        found.append("train.per_device_train_batch_size must be >= 2 for KTO: its KL reference point mixes the batch.")
    try:
        make_config(recipe, cfg, setup)
    except RecipeError as exc:
        title, *items = str(exc).splitlines()
        found.extend(
            f"{title.rstrip(':')}: {item.strip().removeprefix('- ')}" for item in items
        ) if items else found.append(title)
    return found


def _reference_problems(cfg: DictConfig, recipe: Recipe, setup: ModelSetup) -> list[str]:
    """conf/ref/: what the reference is must fit the method and the adapters."""
    ref = cfg.get("ref")
    if ref is None or ref.name == "base":
        return []
    if not recipe.uses_reference:
        return [f"ref={ref.name}: method={cfg.method.name} trains without a reference model; drop ref= (ref=base)."]
    if ref.name == "sft_adapter":
        found = []
        if cfg.peft.name not in ("lora", "qlora"):
            found.append(
                f"ref=sft_adapter keeps training a LoRA adapter: use peft=lora or peft=qlora, not peft={cfg.peft.name}."
            )
        if not ref.get("adapter_path"):
            found.append(
                "ref=sft_adapter needs ref.adapter_path=/path/to/sft/adapter (a PEFT folder with adapter_config.json)."
            )
        elif not (Path(ref.adapter_path) / "adapter_config.json").is_file():
            found.append(
                f"ref.adapter_path={ref.adapter_path}: no adapter_config.json there; point it at a PEFT adapter folder."
            )
        if setup.quantized and setup.processes > 1:
            # Several processes need a separate reference with the adapter merged in; merged into 4-bit weights,
            # the SFT update would be rounded away.
            found.append(
                "ref=sft_adapter with peft=qlora runs in one process only (launcher=single); with several, merge the "
                "SFT adapter into the base weights and train a new adapter on that folder (model.path=), whose "
                "reference is then the SFT model."
            )
        return found
    if ref.name == "model":
        if not ref.get("path"):
            return ["ref=model needs ref.path=<Hub id or local folder> of the reference model."]
        if str(ref.path).startswith(("/", "./", "../", "~")) and not Path(ref.path).expanduser().exists():
            return [f"ref.path={ref.path} does not exist."]
    return []


def validate(cfg: DictConfig, recipe: Recipe, setup: ModelSetup) -> None:
    found = problems(cfg, recipe, setup)
    for warning in checkpoint_warnings(cfg.train):
        log.warning("%s", warning)
    if found:
        raise RecipeError("invalid config:\n  - " + "\n  - ".join(found))
