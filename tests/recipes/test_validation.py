import pytest

from recipes import load_recipe
from recipes.errors import RecipeError
from recipes.validation import validate
from tests.conftest import compose_config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method.beta=0"], r"method\.beta=0: must be > 0"),
        (["method.beta=-1"], r"method\.beta=-1: must be > 0"),
        (["train.learning_rate=0"], r"train\.learning_rate=0: must be > 0"),
        (["precision=bf16"], r"precision=bf16 needs a GPU"),
        (["dataset.num_eval=0"], r"dataset\.num_eval must be >= 1"),
    ],
)
def test_each_rule_names_the_key(overrides, message):
    cfg = compose_config(*overrides)
    with pytest.raises(RecipeError, match=message):
        validate(cfg, load_recipe(cfg.method.recipe))


def test_all_problems_come_in_one_block():
    cfg = compose_config("method.beta=0", "train.learning_rate=-1")
    with pytest.raises(RecipeError) as error:
        validate(cfg, load_recipe(cfg.method.recipe))
    assert "method.beta" in str(error.value) and "train.learning_rate" in str(error.value)


def test_default_config_is_valid():
    cfg = compose_config()
    validate(cfg, load_recipe(cfg.method.recipe))
