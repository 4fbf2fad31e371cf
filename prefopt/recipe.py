"""What a method recipe declares, and how the library finds it.

A recipe module (recipes/dpo.py, or a copy made by `make new-recipe`) defines `RECIPE = Recipe(...)`. The library
reads only that object: its data format, whether it trains against a reference, its loss when the policy equals the
reference, the metrics its trainer logs and the model class it trains (a policy or a reward model). Nothing looks
at the module's name or its classes, so a copy gets the same memory estimate, health rules and evaluation as its
original.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from omegaconf import DictConfig

from prefopt.errors import RecipeError

if TYPE_CHECKING:
    from transformers import Trainer, TrainingArguments

    from prefopt.model_setup import ModelSetup
    from prefopt.run import PreparedRun

DataFormat = Literal["paired", "unpaired", "sft"]
DATA_FORMATS = ("paired", "unpaired", "sft")  # prompt/chosen/rejected; prompt/completion/label; prompt/completion
ModelClass = Literal["causal_lm", "sequence_classification"]
MODEL_CLASSES = ("causal_lm", "sequence_classification")  # a policy; a reward model (one score per text)

# What TRL's pairwise trainers log for each pair (without the train_/eval_ prefix): the implicit rewards and the
# answers' log-probabilities, as prefopt.evaluation computes them on held-out pairs.
PAIR_METRICS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
)


def no_fixed_start(cfg: DictConfig) -> float | None:
    """For losses whose starting value depends on the data (SFT terms, odds ratios): no stuck-loss rule."""
    return None


def sigmoid_dpo_start(cfg: DictConfig) -> float | None:
    """DPO's sigmoid loss is -log sigmoid(0) = ln 2 while the policy equals its reference; other loss types differ."""
    loss_types = cfg.method.get("loss_type") or ["sigmoid"]
    loss_types = [loss_types] if isinstance(loss_types, str) else list(loss_types)
    return math.log(2) if loss_types == ["sigmoid"] else None


@dataclass(frozen=True)
class Recipe:
    """A method as the library sees it.

    config_class: TRL's config (DPOConfig, ...); the library builds it from conf/method/<name>.yaml and the train:
        section, every key checked against its fields.
    build_trainer: (cfg, *, args, model, ref_model, tokenizer, train_dataset, eval_dataset, peft_config, callbacks)
        -> the TRL trainer. `ref_model` is None where TRL needs no second model (see prefopt.model_setup).
    data_format: "paired", "unpaired" (KTO) or "sft" (prompt, completion: supervised fine-tuning); paired data is
        unpaired for an unpaired recipe, and its prompt + chosen for an SFT recipe.
    uses_reference: trains against a reference model; its rewards are then beta * log(policy / reference).
    loss_at_start: the training loss while the policy equals its reference, or None when that depends on the data;
        the health monitor warns when the loss stays there.
    logged_metrics: the metric names its trainer logs (TRL's, without the train_/eval_ prefix); evaluation reuses
        the trainer's held-out pair rewards when they are there and are log-ratios.
    fused_lm_head: log-probs come from a chunked LM head that never holds the logits (the memory estimate).
    model_class: "causal_lm" (a policy, the default) or "sequence_classification" (a reward model: one score per
        text, loaded with num_labels=1 and LoRA task type SEQ_CLS); only a causal LM generates, so the launcher's
        generation evaluation after training applies to it alone.
    own_keys: keys of its method config that the recipe reads itself (share_prompt, ...); every other key is a field
        of config_class and is checked against it.
    config_problems: (cfg, recipe, setup) -> problems, for rules of its own; checked with every other rule before
        anything loads.
    loop: None to train with one trainer.train() over the training split; else the recipe's own training loop,
        (run: prefopt.run.PreparedRun) -> train metrics, which builds its trainers with run.new_trainer (online DPO:
        rounds of sampling, pairing and training on those pairs).
    """

    config_class: type[TrainingArguments]
    build_trainer: Callable[..., Trainer]
    data_format: DataFormat
    uses_reference: bool
    loss_at_start: Callable[[DictConfig], float | None] = no_fixed_start
    logged_metrics: tuple[str, ...] = ()
    fused_lm_head: bool = False
    model_class: ModelClass = "causal_lm"
    own_keys: tuple[str, ...] = ()
    config_problems: Callable[[DictConfig, Recipe, ModelSetup], list[str]] | None = None
    loop: Callable[[PreparedRun], dict] | None = None

    def __post_init__(self):
        if self.data_format not in DATA_FORMATS:
            raise RecipeError(f"Recipe(data_format={self.data_format!r}): must be one of {', '.join(DATA_FORMATS)}.")
        if self.model_class not in MODEL_CLASSES:
            raise RecipeError(f"Recipe(model_class={self.model_class!r}): must be one of {', '.join(MODEL_CLASSES)}.")

    @property
    def trains_reward_model(self) -> bool:
        """It trains a scorer, not a policy: nothing to generate with, nothing to compare against a reference."""
        return self.model_class == "sequence_classification"

    @property
    def logs_pair_rewards(self) -> bool:
        """Its eval_rewards/* are the implicit rewards of held-out pairs, as prefopt.evaluation computes them."""
        return self.uses_reference and set(PAIR_METRICS) <= set(self.logged_metrics)


def load_recipe(module_name: str) -> Recipe:
    """The RECIPE of the module a method config names (`method.recipe`), e.g. recipes.dpo or recipes.my_dpo."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise RecipeError(
            f"method.recipe={module_name}: no such module ({exc}). Recipes live in recipes/<name>.py."
        ) from None
    recipe = getattr(module, "RECIPE", None)
    if not isinstance(recipe, Recipe):
        raise RecipeError(
            f"recipe module {module_name} defines no RECIPE = prefopt.recipe.Recipe(...) (see recipes/dpo.py)."
        )
    return recipe
