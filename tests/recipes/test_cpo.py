"""recipes/cpo.py: SimPO and CPO trained end to end through scripts/train.py on the tiny random model."""

import math

import pytest
from trl.experimental.cpo import CPOConfig

from prefopt.run import trl_config
from tests.conftest import FAST, compose_config, read_run, run_train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One short run per method, shared by the tests below (each run takes ~20 s on 2 cores)."""
    finished = {}
    for method, overrides in (("simpo", ["method.cpo_alpha=0"]), ("cpo", [])):  # simpo: plain SimPO
        run_dir = tmp_path_factory.mktemp(method) / "run"
        run_train(f"method={method}", *overrides, *FAST, f"hydra.run.dir={run_dir}")
        finished[method] = read_run(run_dir)
    return finished


def test_method_configs_select_the_intended_cpo_trainer_losses():
    simpo = trl_config(compose_config("method=simpo", "model=tiny-random"))
    assert isinstance(simpo, CPOConfig)
    # make train-simpo is CPO-SimPO: SimPO's loss plus the SFT term on chosen (docs/sweeps.md)
    assert (simpo.loss_type, simpo.cpo_alpha, simpo.beta, simpo.simpo_gamma) == ("simpo", 1.0, 2.0, 1.0)
    assert simpo.simpo_gamma / simpo.beta == 0.5  # the SimPO authors' starting ratio
    cpo = trl_config(compose_config("method=cpo", "model=tiny-random"))
    assert (cpo.loss_type, cpo.cpo_alpha, cpo.beta) == ("sigmoid", 1.0, 0.1)


@pytest.mark.parametrize("method", ["simpo", "cpo"])
def test_training_lowers_the_held_out_loss(runs, method):
    metrics, config = runs[method]
    before = metrics["before_training"]
    assert (metrics["method"], metrics["status"], config["method"]["recipe"]) == (method, "completed", "recipes.cpo")
    assert math.isfinite(metrics["train_loss"])
    for key in ("eval_loss", "eval_rewards/margins", "eval_rewards/accuracies", "eval_nll_loss"):
        assert math.isfinite(metrics[key]) and math.isfinite(before[key]), key
    assert metrics["eval_loss"] < before["eval_loss"], "training did not lower the held-out loss"
    # The rewards are beta * log-prob of the policy alone: no reference model is subtracted.
    beta = config["method"]["beta"]
    assert metrics["eval_rewards/chosen"] == pytest.approx(beta * metrics["eval_logps/chosen"], rel=1e-4)


def test_simpo_runs_without_the_sft_term_and_widens_the_margin(runs):
    metrics, config = runs["simpo"]
    assert (config["method"]["loss_type"], config["method"]["cpo_alpha"]) == ("simpo", 0.0)
    # cpo_alpha=0 reached the trainer: it reports the SFT term as exactly zero, before and after.
    assert metrics["eval_nll_loss"] == 0.0 and metrics["before_training"]["eval_nll_loss"] == 0.0
    assert metrics["eval_rewards/margins"] > metrics["before_training"]["eval_rewards/margins"]


def test_simpo_rewards_are_length_normalized_and_cpo_rewards_are_not(runs):
    simpo_logp = runs["simpo"][0]["eval_logps/chosen"]
    cpo_logp = runs["cpo"][0]["eval_logps/chosen"]
    # Same model, data and seed: SimPO averages log-probs over the answer's tokens, CPO sums them, so the
    # CPO value is many times larger in magnitude (the built-in answers are several tokens long).
    assert cpo_logp < 3 * simpo_logp < 0


def test_cpo_adds_a_positive_sft_term(runs):
    metrics, config = runs["cpo"]
    assert (config["method"]["loss_type"], config["method"]["cpo_alpha"]) == ("sigmoid", 1.0)
    assert metrics["eval_nll_loss"] > 0
    # loss = preference loss (> 0) + cpo_alpha * nll_loss
    assert metrics["eval_loss"] > metrics["eval_nll_loss"]
