"""The one seam from a composed config to a ready trainer. Every entry point goes through it: scripts/train.py,
each stage of a multi-stage method (prefopt.stages), the rounds of online DPO, the memory dry run, compare-methods'
method list, `make eval`'s reloading of a run and the benchmarks. So a method trains the same way wherever it is started.

  resolve_plan(cfg)        the recipe and its ModelSetup; loads nothing, reaches no Hub (the memory dry run stops here)
  plan_run(cfg)            that, with the hardware preset applied and every config rule checked
  load_data(...)           the splits in the recipe's data format, unusable rows dropped, stored on disk
  load_models(...)         policy, reference and LoRA config, as the ModelSetup says
  build_trainer(...)       the recipe's TRL config and trainer
  prepare_run(cfg, dir)    all of them in that order, with the run directory's files: a PreparedRun
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig
from transformers import set_seed

from prefopt.recipe import Recipe, load_recipe

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase, Trainer

    from prefopt.model_setup import ModelSetup

log = logging.getLogger("train")


@dataclass(frozen=True)
class RunPlan:
    """What a config trains, decided once: the recipe and which models it holds (prefopt.model_setup)."""

    recipe: Recipe
    setup: ModelSetup


@dataclass
class Models:
    policy: object
    reference: object | None  # None where TRL needs no second model (prefopt.adapters)
    peft_config: object | None  # a peft.LoraConfig for TRL to wrap the policy in, or None


@dataclass
class PreparedRun:
    """A run ready to train: `trainer` is None for a recipe that builds its own trainers (Recipe.loop)."""

    cfg: DictConfig
    run_dir: Path
    plan: RunPlan
    tokenizer: PreTrainedTokenizerBase
    models: Models
    train_data: Dataset
    eval_data: Dataset
    callbacks: list
    checkpoint: Path | None = None  # where training resumes from (train.resume)
    trainer: Trainer | None = None
    history: list = field(default_factory=list)  # what the training loop logged, step by step

    @property
    def recipe(self) -> Recipe:
        return self.plan.recipe

    @property
    def setup(self) -> ModelSetup:
        return self.plan.setup

    def new_trainer(self, cfg: DictConfig, train_data: Dataset, eval_data: Dataset | None, callbacks: list) -> Trainer:
        """A trainer of this run's recipe on this run's models (online DPO: one per round, on that round's pairs)."""
        return build_trainer(cfg, self.plan, self.models, self.tokenizer, train_data, eval_data, callbacks)

    def evaluate(self) -> dict:
        """TRL's evaluation of the policy on the held-out split, eval_ metrics ({} before any trainer exists)."""
        if self.trainer is None or self.trainer.eval_dataset is None:
            return {}
        return self.trainer.evaluate(metric_key_prefix="eval")

    def train(self) -> dict:
        """TRL's trainer.train() from the resume checkpoint, or the recipe's own loop; returns the train metrics."""
        if self.recipe.loop is not None:
            return self.recipe.loop(self)
        resume = str(self.checkpoint) if self.checkpoint else None
        metrics = self.trainer.train(resume_from_checkpoint=resume).metrics
        self.history = self.trainer.state.log_history
        return metrics


def resolve_plan(cfg: DictConfig) -> RunPlan:
    """The recipe of `cfg.method.recipe` and the run's ModelSetup, as the config says (nothing checked beyond that)."""
    from prefopt.model_setup import resolve_model_setup
    from prefopt.validation import check_sections

    check_sections(cfg)
    recipe = load_recipe(cfg.method.recipe)
    return RunPlan(recipe, resolve_model_setup(cfg, recipe))  # policy, reference, adapters, precision: decided once


def plan_run(cfg: DictConfig) -> RunPlan:
    """resolve_plan, then hardware= picks micro-batch, accumulation and checkpointing, and every config rule is
    checked, all problems in one message."""
    from prefopt.memory import fit_hardware
    from prefopt.validation import validate

    plan = resolve_plan(cfg)
    fit_hardware(cfg, plan.recipe, plan.setup)
    validate(cfg, plan.recipe, plan.setup)
    return plan


def load_data(cfg: DictConfig, plan: RunPlan, tokenizer) -> tuple[Dataset, Dataset]:
    """(train, eval) in the recipe's format, rows too long or malformed dropped, stored on disk under their content
    (TRL's tokenization and reference caches then persist across runs)."""
    from prefopt.data import load_splits
    from prefopt.data.cache import on_disk
    from prefopt.data.checks import drop_unusable
    from prefopt.data.report import log_summary

    train_data, eval_data = load_splits(cfg.dataset, plan.recipe.data_format)
    log.info("data: %d train / %d eval rows (%s)", len(train_data), len(eval_data), plan.recipe.data_format)
    log_summary(train_data, eval_data, tokenizer, cfg.train.max_length)
    train_data, eval_data = drop_unusable(train_data, eval_data, tokenizer, cfg.train.max_length)
    return on_disk(train_data, "train"), on_disk(eval_data, "eval")


def load_models(cfg: DictConfig, plan: RunPlan) -> Models:
    from prefopt.adapters import build_policy_and_reference, quantization_config

    quantization = quantization_config(cfg.peft, plan.setup.precision)
    return Models(*build_policy_and_reference(cfg, plan.setup, quantization))


def build_trainer(
    cfg: DictConfig, plan: RunPlan, models: Models, tokenizer, train_data, eval_data, callbacks: list
) -> Trainer:
    """The recipe's TRL config (every key checked against its fields) and its trainer."""
    return plan.recipe.build_trainer(
        cfg,
        args=trl_config(cfg, plan),
        model=models.policy,
        ref_model=models.reference,
        tokenizer=tokenizer,
        train_dataset=train_data,
        eval_dataset=eval_data,
        peft_config=models.peft_config,
        callbacks=callbacks,
    )


def trl_config(cfg: DictConfig, plan: RunPlan | None = None):
    """The TRL config (DPOConfig, ...) of `cfg`'s recipe; its ModelSetup is resolved when no plan is given."""
    from prefopt.trl_args import make_config

    plan = plan or resolve_plan(cfg)
    return make_config(plan.recipe, cfg, plan.setup)


def prepare_run(cfg: DictConfig, run_dir: Path, plan: RunPlan | None = None) -> PreparedRun:
    """Everything before training, in order: the resume point, config.yaml, tokenizer, data (before the weights: data
    that does not fit the method stops in seconds), models, the W&B run and the trainer. Hold the run directory's
    lock (prefopt.run_lock) around it."""
    from prefopt.callbacks import build_callbacks
    from prefopt.checkpoints import resolve_resume
    from prefopt.models import check_available, load_tokenizer
    from prefopt.run_files import refuse_existing_run, save_config
    from prefopt.tracking import start_wandb
    from prefopt.trl_args import resolve_precompute, run_name

    plan = plan or plan_run(cfg)
    checkpoint = resolve_resume(cfg.train.resume, run_dir)
    refuse_existing_run(run_dir, resuming=checkpoint is not None)
    check_available(cfg.model)
    save_config(cfg, run_dir)
    tokenizer = load_tokenizer(cfg.model)
    train_data, eval_data = load_data(cfg, plan, tokenizer)
    if resolve_precompute(cfg, plan.recipe, len(train_data), plan.setup.processes) is not None:
        save_config(cfg, run_dir)  # config.yaml records what `auto` became
    models = load_models(cfg, plan)
    start_wandb(cfg, run_dir, run_name(cfg))
    set_seed(cfg.train.seed)  # LoRA initialization, dropout and data order: the same run for the same seed
    callbacks = build_callbacks(cfg, plan.recipe)
    run = PreparedRun(cfg, run_dir, plan, tokenizer, models, train_data, eval_data, callbacks, checkpoint)
    if plan.recipe.loop is None:
        run.trainer = run.new_trainer(cfg, train_data, eval_data, callbacks)
    return run
