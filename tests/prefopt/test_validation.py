import pytest

from prefopt.errors import RecipeError
from prefopt.validation import validate
from tests.conftest import compose_config, recipe_and_setup


def test_all_problems_come_in_one_block():
    cfg = compose_config("method.beta=0", "train.learning_rate=-1")
    with pytest.raises(RecipeError) as error:
        validate(cfg, *recipe_and_setup(cfg))
    assert "method.beta" in str(error.value) and "train.learning_rate" in str(error.value)


def test_default_config_is_valid():
    cfg = compose_config()
    validate(cfg, *recipe_and_setup(cfg))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method.beta=0"], r"method\.beta=0: must be > 0"),
        (["method.beta=-1"], r"method\.beta=-1: must be > 0"),
        (["train.learning_rate=0"], r"train\.learning_rate=0: must be > 0"),
        (["precision=bf16"], r"precision=bf16 needs a GPU"),
        (["dataset.num_eval=0"], r"dataset\.num_eval must be >= 1"),
        (["method=kto", "method.desirable_weight=0"], r"method\.desirable_weight=0: must be > 0"),
        (["method=kto", "method.undesirable_weight=-2"], r"method\.undesirable_weight=-2: must be > 0"),
        (["method=kto", "train.per_device_train_batch_size=1"], r"per_device_train_batch_size must be >= 2 for KTO"),
        (
            ["method.loss_type=[sigmoid,sigmoidd]"],
            r"DPOConfig: loss_type=.*'sigmoidd' unknown to TRL; one of sigmoid, hinge, ipo",
        ),
        (
            ["train.max_steps=abc"],
            r"DPOConfig: max_steps='abc': expected int \(the train: section of conf/train\.yaml\)",
        ),
        (["method.beta=high"], r"DPOConfig: beta='high': expected float/int \(conf/method/dpo\.yaml\)"),
        (["train.max_steps=true"], r"max_steps=True: expected int"),
        (["peft.r=sixteen"], r"peft\.r='sixteen': must be a positive whole number"),
        (["peft.r=0"], r"peft\.r=0: must be a positive whole number"),
        (["peft.lora_dropout=1.5"], r"peft\.lora_dropout=1\.5: must be in \[0, 1\)"),
        (["train.max_steps=0"], r"train\.max_steps=0 trains nothing: set the number of optimizer steps"),
        (
            ["train.max_steps=-1", "train.num_train_epochs=0"],
            r"train\.max_steps=-1 trains train\.num_train_epochs=0 epochs, i\.e\. nothing: set train\.num_train_epochs > 0",
        ),
        (
            ["train.eval_steps=10"],
            r"train\.eval_steps=10 has no effect with train\.eval_strategy=no: add train\.eval_strategy=steps",
        ),
    ],
)
def test_each_rule_names_the_key_before_loading(overrides, message):
    cfg = compose_config(*overrides)
    with pytest.raises(RecipeError, match=message):
        validate(cfg, *recipe_and_setup(cfg))


def test_steps_and_epochs_that_train_something_are_valid():
    for overrides in (
        ["train.max_steps=-1", "train.num_train_epochs=2"],
        ["train.eval_strategy=steps", "train.eval_steps=5"],
    ):
        cfg = compose_config(*overrides)
        validate(cfg, *recipe_and_setup(cfg))


def test_save_steps_beyond_the_run_warns_that_only_the_end_is_checkpointed(caplog):
    cfg = compose_config("train.max_steps=30", "train.save_steps=100")
    validate(cfg, *recipe_and_setup(cfg))  # valid: the trainer still saves a checkpoint at the last step
    assert "train.save_steps=100 is not below train.max_steps=30" in caplog.text
    assert "set train.save_steps to less than 30" in caplog.text
    caplog.clear()
    cfg = compose_config("train.max_steps=30", "train.save_steps=10")
    validate(cfg, *recipe_and_setup(cfg))
    assert "save_steps" not in caplog.text


def test_a_section_replaced_by_a_value_is_named():
    from prefopt.validation import check_sections

    with pytest.raises(RecipeError, match=r"train=3 must be a config group or section"):
        check_sections(compose_config("train=3"))
