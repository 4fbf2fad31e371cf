"""conf/budget/: a method's own training budget, pulled in by its method config, below any command-line override."""

import pytest

from prefopt.config import compose_config


@pytest.mark.parametrize(("method", "loss_type"), [("dpo", ["sigmoid", "sft"]), ("ipo", ["ipo", "sft"])])
def test_losses_with_an_sft_term_train_their_own_budget(method, loss_type):
    cfg = compose_config(f"method={method}")
    assert (cfg.train.max_steps, list(cfg.method.loss_type)) == (60, loss_type)


@pytest.mark.parametrize("method", ["kto", "orpo", "simpo", "sft"])
def test_methods_without_a_budget_train_the_launchers_steps(method):
    assert compose_config(f"method={method}").train.max_steps == 30


@pytest.mark.parametrize(("overrides", "steps"), [(["train.max_steps=5"], 5), (["experiment=zephyr-dpo-qlora"], -1)])
def test_the_command_line_and_an_experiment_win_over_the_budget(overrides, steps):
    assert compose_config(*overrides).train.max_steps == steps
