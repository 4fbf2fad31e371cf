import pytest
from omegaconf import open_dict

from prefopt import trl_args
from prefopt.errors import RecipeError
from prefopt.recipe import load_recipe
from prefopt.run import trl_config
from prefopt.trl_args import resolve_precompute, run_name
from tests.conftest import compose_config


def test_method_hyperparameters_and_train_fields_reach_the_trl_config():
    cfg = compose_config("method=ipo", "method.beta=0.3", "train.max_steps=7", "model=tiny-random")
    args = trl_config(cfg)
    assert (args.beta, args.loss_type, args.max_steps) == (0.3, ["ipo", "sft"], 7)
    assert not args.bf16 and not args.fp16  # CPU: fp32
    assert args.run_name == run_name(cfg) == "ipo-tiny-random-beta0.3"


@pytest.mark.parametrize(
    ("overrides", "rows", "processes", "expected"),
    [
        (["train.max_steps=60"], 256, 1, True),  # 480 rows trained: every pair at least once
        (["train.max_steps=5"], 256, 1, False),  # 40 of 256 pairs: a pass over all of them would cost more
        (["train.max_steps=16"], 256, 2, True),  # 2 processes x 16 steps x 8 pairs
        (["train.max_steps=-1"], 10_000, 1, True),  # epochs: every pair
        (["method=kto", "train.max_steps=5"], 256, 1, False),
    ],
)
def test_auto_precomputes_the_reference_when_the_run_trains_on_every_row(overrides, rows, processes, expected):
    cfg = compose_config(*overrides, "train.per_device_train_batch_size=8")
    assert cfg.method.precompute_ref_log_probs == "auto"
    assert trl_config(cfg).precompute_ref_log_probs is False  # unresolved: TRL's
    assert resolve_precompute(cfg, load_recipe(cfg.method.recipe), rows, processes) is expected
    assert cfg.method.precompute_ref_log_probs is expected
    assert trl_config(cfg).precompute_ref_log_probs is expected


def test_auto_precomputes_the_reference_in_every_job_of_a_sweep(monkeypatch):
    """A multirun's jobs share one cached reference pass (prefopt.ref_cache), so auto turns it on for a few steps."""
    cfg = compose_config("train.max_steps=5")
    recipe = load_recipe(cfg.method.recipe)
    assert resolve_precompute(cfg, recipe, 256, 1) is False
    monkeypatch.setattr(trl_args, "_in_sweep", lambda: True)
    cfg = compose_config("train.max_steps=5")
    assert resolve_precompute(cfg, recipe, 256, 1) is True


def test_an_explicit_precompute_choice_and_methods_without_one_are_left_alone():
    cfg = compose_config("method.precompute_ref_log_probs=false", "train.max_steps=60")
    assert (
        resolve_precompute(cfg, load_recipe(cfg.method.recipe), 1, 1) is None
        and cfg.method.precompute_ref_log_probs is False
    )
    cfg = compose_config("method=orpo")
    assert (
        resolve_precompute(cfg, load_recipe(cfg.method.recipe), 1, 1) is None
        and "precompute_ref_log_probs" not in cfg.method
    )


def test_logger_group_picks_report_to():
    assert trl_config(compose_config("logger=wandb")).report_to == ["wandb"]
    assert trl_config(compose_config("logger=none")).report_to == []


def test_a_key_the_trl_config_lacks_is_named():
    cfg = compose_config("method=orpo")
    with open_dict(cfg):
        cfg.method.max_prompt_length = 128  # removed from TRL: must not pass silently
    with pytest.raises(
        RecipeError, match="ORPOConfig:\n  - no field 'max_prompt_length' \\(from conf/method/orpo.yaml"
    ):
        trl_config(cfg)


def test_unknown_recipe_module_is_a_clear_error():
    with pytest.raises(RecipeError, match="method.recipe=recipes.nope: no such module"):
        load_recipe("recipes.nope")
