import pytest
from omegaconf import open_dict

from prefopt.errors import RecipeError
from prefopt.recipe import load_recipe
from prefopt.trl_args import run_name
from tests.conftest import compose_config


def test_method_hyperparameters_and_train_fields_reach_the_trl_config():
    cfg = compose_config("method=ipo", "method.beta=0.3", "train.max_steps=7", "model=tiny-random")
    args = load_recipe(cfg.method.recipe).build_config(cfg)
    assert (args.beta, args.loss_type, args.max_steps) == (0.3, ["ipo"], 7)
    assert not args.bf16 and not args.fp16  # CPU: fp32
    assert args.run_name == run_name(cfg) == "ipo-tiny-random-beta0.3"


def test_logger_group_picks_report_to():
    assert load_recipe("recipes.dpo").build_config(compose_config("logger=wandb")).report_to == ["wandb"]
    assert load_recipe("recipes.dpo").build_config(compose_config("logger=none")).report_to == []


def test_a_key_the_trl_config_lacks_is_named():
    cfg = compose_config("method=orpo")
    with open_dict(cfg):
        cfg.method.max_prompt_length = 128  # removed from TRL: must not pass silently
    with pytest.raises(
        RecipeError, match="ORPOConfig:\n  - no field 'max_prompt_length' \\(from conf/method/orpo.yaml"
    ):
        load_recipe(cfg.method.recipe).build_config(cfg)


def test_unknown_recipe_module_is_a_clear_error():
    with pytest.raises(RecipeError, match="method.recipe=recipes.nope: no such module"):
        load_recipe("recipes.nope")
