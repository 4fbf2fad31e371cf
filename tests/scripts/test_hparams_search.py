"""The Optuna search end to end on the tiny model, and the value scripts/train.py hands a sweeper."""

import math

import pytest
import yaml

from prefopt.errors import RecipeError
from tests.conftest import FAST, load_script, read_run, run_train


def test_sweep_objective_returns_the_named_metric_or_names_what_exists():
    sweep_objective = load_script("scripts/train.py").sweep_objective
    metrics = {"method": "kto", "eval_loss": 0.4, "eval_kl": 0.02, "status": "completed"}
    assert sweep_objective(metrics, "eval_loss") == 0.4
    with pytest.raises(RecipeError, match=r"optimized_metric=eval_rewards/accuracies: .* reports eval_kl, eval_loss"):
        sweep_objective(metrics, "eval_rewards/accuracies")


@pytest.mark.slow
def test_two_optuna_trials_search_beta_and_learning_rate(tmp_path):
    sweep = tmp_path / "optuna"
    run_train(
        "hparams_search=dpo_optuna", *FAST, "train.max_steps=2", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}"
    )
    trials = [read_run(sweep / job) for job in ("0", "1")]
    for metrics, config in trials:
        assert metrics["status"] == "completed"
        assert 0.01 <= config["method"]["beta"] <= 0.5 and 1e-5 <= config["train"]["learning_rate"] <= 5e-4
        assert metrics["beta"] == config["method"]["beta"]
    assert trials[0][1]["method"]["beta"] != trials[1][1]["method"]["beta"], "each trial samples its own beta"

    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    accuracies = [metrics["eval_rewards/accuracies"] for metrics, _ in trials]
    assert math.isclose(results["best_value"], max(accuracies))  # maximized, and the value is the job's metric
    best = trials[accuracies.index(max(accuracies))][1]
    assert set(results["best_params"]) == {"method.beta", "train.learning_rate"}
    if accuracies[0] != accuracies[1]:
        assert results["best_params"]["method.beta"] == best["method"]["beta"]
