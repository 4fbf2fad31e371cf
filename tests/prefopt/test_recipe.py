"""prefopt.recipe: the contract a recipe module declares, and what the library reads from it."""

import math
import sys
import types

import pytest
from trl import DPOConfig

from prefopt.errors import RecipeError
from prefopt.recipe import PAIR_METRICS, Recipe, load_recipe, no_fixed_start, sigmoid_dpo_start
from tests.conftest import compose_config


def test_a_module_without_recipe_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "recipes.bare", types.ModuleType("recipes.bare"))
    with pytest.raises(RecipeError, match=r"recipe module recipes\.bare defines no RECIPE = prefopt\.recipe\.Recipe"):
        load_recipe("recipes.bare")


def test_an_unknown_data_format_is_refused():
    with pytest.raises(RecipeError, match=r"Recipe\(data_format='pairs'\): must be one of paired, unpaired"):
        Recipe(config_class=DPOConfig, build_trainer=print, data_format="pairs", uses_reference=True)


@pytest.mark.parametrize(
    ("loss_type", "start"), [(None, math.log(2)), ("[sigmoid]", math.log(2)), ("[ipo]", None), ("[sigmoid,sft]", None)]
)
def test_dpo_loss_at_start_is_ln2_for_the_sigmoid_loss_only(loss_type, start):
    cfg = compose_config(*([f"method.loss_type={loss_type}"] if loss_type else ["method.loss_type=null"]))
    assert sigmoid_dpo_start(cfg) == start
    assert no_fixed_start(cfg) is None


@pytest.mark.parametrize(
    ("method", "data_format", "uses_reference", "logs_pair_rewards", "fused_lm_head"),
    [
        ("dpo", "paired", True, True, True),
        ("ipo", "paired", True, True, True),
        ("kto", "unpaired", True, False, True),  # unpaired: no reward accuracy
        ("orpo", "paired", False, False, False),  # its rewards are log-probs, not log-ratios
        ("simpo", "paired", False, False, False),
        ("cpo", "paired", False, False, False),
    ],
)
def test_each_shipped_recipe_declares_its_traits(method, data_format, uses_reference, logs_pair_rewards, fused_lm_head):
    recipe = load_recipe(compose_config(f"method={method}").method.recipe)
    assert (recipe.data_format, recipe.uses_reference) == (data_format, uses_reference)
    assert (recipe.logs_pair_rewards, recipe.fused_lm_head) == (logs_pair_rewards, fused_lm_head)
    if data_format == "paired":
        assert set(PAIR_METRICS) <= set(recipe.logged_metrics)
