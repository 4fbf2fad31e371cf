"""Every published experiment composes, validates and builds its TRL config; its header names a source and a command."""

import re

import pytest

from prefopt.adapters import lora_config
from prefopt.model_setup import resolve_model_setup
from prefopt.recipe import load_recipe
from prefopt.run import trl_config
from prefopt.validation import validate
from tests.conftest import CONF, compose_config

EXPERIMENTS = sorted(path.stem for path in (CONF / "experiment").glob("*.yaml"))


def header(name: str) -> str:
    lines = (CONF / "experiment" / f"{name}.yaml").read_text().splitlines()
    return "\n".join(line for line in lines if line.startswith("#"))


def test_the_published_experiments_exist():
    assert {"zephyr-dpo-qlora", "smollm2-dpo", "llama3-8b-orpo", "mistral-kto", "llama3-8b-simpo"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_builds_its_trl_config(name):
    cfg = compose_config(f"experiment={name}")
    recipe = load_recipe(cfg.method.recipe)
    validate(cfg, recipe, resolve_model_setup(cfg, recipe))
    args = trl_config(cfg)  # a key TRL does not know fails here, naming it
    assert args.beta == cfg.method.beta and args.learning_rate == cfg.train.learning_rate
    lora = lora_config(cfg.peft)
    assert (lora is None) == (cfg.peft.name == "none")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_header_gives_the_source_and_a_command_that_keeps_the_experiments_method(name):
    text = header(name)
    assert text.startswith("# @package _global_"), "experiments are global deltas"
    assert "Source:" in text
    command = re.search(r'make train-(\S+) ARGS="experiment=([\w-]+)', text)
    assert command, "the header gives the exact command"
    # A command-line method= wins over the experiment's own: train-<method> must name the experiment's method.
    cfg = compose_config(f"experiment={name}")
    assert command.groups() == (cfg.method.name, name)


def test_zephyr_qlora_follows_the_handbook_recipe():
    cfg = compose_config("experiment=zephyr-dpo-qlora")
    assert (cfg.method.name, cfg.model.name, cfg.dataset.name, cfg.peft.name) == (
        "dpo",
        "zephyr-7b-sft",
        "ultrafeedback",
        "qlora",
    )
    assert (cfg.method.beta, cfg.train.learning_rate, cfg.peft.r, cfg.peft.lora_alpha) == (0.01, 5e-6, 128, 128)
    assert list(cfg.method.loss_type) == ["sigmoid"]  # the handbook's plain DPO, not the SFT term of our default
    assert cfg.peft.load_in_4bit and cfg.train.num_train_epochs == 1 and cfg.train.max_steps == -1


def test_an_experiment_changes_only_what_it_lists():
    base, exp = compose_config(), compose_config("experiment=smollm2-dpo")
    assert exp.model == base.model  # the embedded model stays as it is
    assert exp.train.seed == base.train.seed and exp.precision == base.precision
