"""Every shipped config composes, and the TRL config it describes instantiates (alignment-handbook's drift, prevented)."""

import pytest
from hydra.errors import ConfigCompositionException

from prefopt.adapters import lora_config
from prefopt.model_setup import resolve_model_setup
from prefopt.recipe import load_recipe
from prefopt.run import trl_config
from prefopt.validation import validate
from tests.conftest import CONF, compose_config

GROUPS = ["method", "model", "dataset", "peft", "logger", "hardware"]


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_builds_its_trl_config(group, option):
    cfg = compose_config(f"{group}={option}")
    recipe = load_recipe(cfg.method.recipe)
    validate(cfg, recipe, resolve_model_setup(cfg, recipe))
    args = trl_config(cfg)
    assert args.output_dir and args.run_name.startswith(cfg.method.name)
    lora_config(cfg.peft)
    with open(CONF / group / f"{option}.yaml") as f:
        assert f.readline().startswith("# "), "every config opens with a line on how to run it"


def test_required_groups_exist():
    assert {"dpo", "ipo", "kto", "orpo"} <= set(options("method"))
    assert {
        "smollm2-135m",
        "tiny-random",
        "llama3-8b",
        "llama3.1-8b-instruct",
        "mistral-7b-instruct",
        "qwen2.5-0.5b-instruct",
        "qwen2.5-7b-instruct",
        "zephyr-7b-sft",
    } <= set(options("model"))
    assert {"builtin", "hh-rlhf", "ultrafeedback"} <= set(options("dataset"))
    assert {"none", "lora", "qlora"} <= set(options("peft"))
    assert {"wandb", "none"} <= set(options("logger"))


def test_default_is_dpo_lora_on_the_embedded_model():
    cfg = compose_config()
    assert (cfg.method.name, cfg.model.name, cfg.dataset.name, cfg.peft.name, cfg.logger.name) == (
        "dpo",
        "smollm2-135m",
        "builtin",
        "lora",
        "wandb",
    )


def test_misspelled_key_is_an_error_not_ignored():
    with pytest.raises(ConfigCompositionException, match="betta"):
        compose_config("method.betta=0.2")
    with pytest.raises(ConfigCompositionException, match="max_step"):
        compose_config("train.max_step=3")


def test_contract_overrides_apply():
    cfg = compose_config(
        "method.beta=0.05",
        "train.max_steps=20",
        "train.learning_rate=1e-5",
        "train.per_device_train_batch_size=2",
        "train.seed=7",
        "dataset.max_train_samples=10",
        "peft.r=8",
        "logger=none",
    )
    assert (cfg.method.beta, cfg.train.max_steps, cfg.train.learning_rate, cfg.train.seed) == (0.05, 20, 1e-5, 7)
    assert (cfg.train.per_device_train_batch_size, cfg.dataset.max_train_samples, cfg.peft.r) == (2, 10, 8)
    assert cfg.logger.name == "none"


def test_slurm_launcher_composes_into_submitit():
    cfg = compose_config("hydra/launcher=slurm", "hydra.launcher.partition=gpu")
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 1, 1)


def test_accelerate_launcher_configs_parse():
    from accelerate.commands.config.config_args import load_config_from_file

    expected = {"single": "NO", "ddp": "MULTI_GPU", "fsdp": "FSDP", "zero3": "DEEPSPEED"}
    for name, kind in expected.items():
        config = load_config_from_file(str(CONF / "launcher" / f"{name}.yaml"))
        assert config.distributed_type.value == kind, name
    assert load_config_from_file(str(CONF / "launcher" / "fsdp.yaml")).fsdp_config["fsdp_version"] == 2
    assert load_config_from_file(str(CONF / "launcher" / "zero3.yaml")).deepspeed_config["zero_stage"] == 3
