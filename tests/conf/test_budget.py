"""conf/budget/: a method's own training budget, pulled in by its method config, below any command-line override."""

import pytest

from prefopt.config import compose_config


@pytest.mark.parametrize(
    ("method", "sft_term"),
    [
        ("dpo", ("loss_type", ["sigmoid", "sft"])),
        ("ipo", ("loss_type", ["ipo", "sft"])),
        ("kto", ("sft_weight", 1.0)),
        ("orpo", ("completion_only_loss", True)),  # its SFT term on the answers, as the others'
        ("simpo", ("cpo_alpha", 1.0)),
        ("cpo", ("cpo_alpha", 1.0)),
    ],
)
def test_losses_with_an_sft_term_train_their_own_budget(method, sft_term):
    cfg = compose_config(f"method={method}")
    key, value = sft_term
    assert cfg.train.max_steps == 60
    assert (list(cfg.method[key]) if key == "loss_type" else cfg.method[key]) == value


@pytest.mark.parametrize("method", ["sft", "rm"])
def test_methods_without_a_budget_train_the_launchers_steps(method):
    assert compose_config(f"method={method}").train.max_steps == 30


@pytest.mark.parametrize(("overrides", "steps"), [(["train.max_steps=5"], 5), (["experiment=zephyr-dpo-qlora"], -1)])
def test_the_command_line_and_an_experiment_win_over_the_budget(overrides, steps):
    assert compose_config(*overrides).train.max_steps == steps
