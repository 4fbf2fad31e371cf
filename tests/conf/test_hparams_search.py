"""conf/hparams_search/dpo_optuna.yaml composes into an Optuna sweep over beta and learning rate."""

from hydra.types import RunMode

from tests.conftest import CONF, compose_config


def test_dpo_optuna_composes_into_an_optuna_sweep_maximizing_reward_accuracy():
    cfg = compose_config("hparams_search=dpo_optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert (sweeper.direction, cfg.optimized_metric) == ("maximize", "eval_rewards/accuracies")
    assert set(sweeper.params) == {"method.beta", "train.learning_rate"}
    assert "interval(0.01, 0.5)" in sweeper.params["method.beta"]
    assert sweeper.n_trials >= 2 and sweeper.sampler.seed is not None
    assert cfg.hydra.mode == RunMode.MULTIRUN


def test_without_a_search_the_launcher_returns_eval_loss():
    cfg = compose_config()
    assert cfg.optimized_metric == "eval_loss"
    assert cfg.hydra.sweeper._target_.endswith("BasicSweeper")


def test_search_config_opens_with_its_package_and_how_to_run():
    lines = (CONF / "hparams_search" / "dpo_optuna.yaml").read_text().splitlines()
    assert lines[0] == "# @package _global_" and "hparams_search=dpo_optuna" in lines[2]
