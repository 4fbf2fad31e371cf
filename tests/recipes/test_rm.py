"""recipes/rm.py: a reward model trained through scripts/train.py on the tiny model, reloaded from its run
directory, and used by scripts/make_pairs.py to score best-of-N pairs."""

import json
import math

import pytest
from omegaconf import OmegaConf
from transformers import LlamaForSequenceClassification
from trl import RewardConfig

from prefopt.adapters import build_policy_and_reference
from prefopt.config import compose_config as compose_make_pairs
from prefopt.data import load_splits
from prefopt.data.pairs import RewardModel
from prefopt.errors import RecipeError
from prefopt.evaluation.runs import load_run
from prefopt.run import trl_config
from prefopt.run_files import EVAL_FILE
from tests.conftest import FAST, compose_config, load_script, read_run, recipe_and_setup, run_train

# A higher learning rate than the LoRA default: 8 steps on the tiny model then move the held-out loss clearly.
RM_FAST = [*FAST, "train.max_steps=8", "train.learning_rate=1e-3"]


@pytest.fixture(scope="module")
def rm_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("rm") / "run"
    run_train("method=rm", *RM_FAST, f"hydra.run.dir={run_dir}")
    return run_dir


def heldout_accuracy_and_margin(reward: RewardModel, cfg) -> tuple[float, float]:
    """Pairwise accuracy and mean margin of `reward` on the run's held-out pairs, scored one answer at a time."""
    _, heldout = load_splits(cfg.dataset, "paired")
    margins = []
    for row in heldout:
        chosen, rejected = (reward(row, [row[side][0]["content"]])[0] for side in ("chosen", "rejected"))
        margins.append(chosen - rejected)
    return sum(m > 0 for m in margins) / len(margins), sum(margins) / len(margins)


def test_the_recipe_loads_a_one_score_classifier_without_a_reference():
    cfg = compose_config("method=rm", "model=tiny-random", "logger=none")
    recipe, setup = recipe_and_setup(cfg)
    assert recipe.trains_reward_model and setup.reference == "none"
    assert isinstance(trl_config(cfg), RewardConfig)
    model, ref_model, peft_config = build_policy_and_reference(cfg, setup)
    assert isinstance(model, LlamaForSequenceClassification) and ref_model is None
    assert (model.config.num_labels, model.config.pad_token_id) == (1, cfg.model.init_config.pad_token_id)
    assert peft_config.task_type == "SEQ_CLS"  # peft then trains and saves the new score head in full


def test_training_lowers_the_held_out_loss_and_skips_the_generation_evaluation(rm_run):
    metrics, config = read_run(rm_run)
    before = metrics["before_training"]
    assert (metrics["method"], metrics["status"], config["method"]["recipe"]) == ("rm", "completed", "recipes.rm")
    for key in ("eval_loss", "eval_accuracy", "eval_margin"):
        assert math.isfinite(metrics[key]) and math.isfinite(before[key]), key
    assert 0 <= metrics["eval_accuracy"] <= 1
    assert metrics["eval_loss"] < before["eval_loss"] - 0.05, "training did not lower the held-out loss"
    assert metrics["eval_margin"] > before["eval_margin"]
    assert not (rm_run / EVAL_FILE).exists()
    assert "no generation evaluation: method=rm trains a reward model" in (rm_run / "train.log").read_text()
    with pytest.raises(RecipeError, match="is a reward model run .method=rm.: it generates nothing"):
        load_run(rm_run)  # make eval


def test_the_saved_adapter_reloads_as_the_reward_model_that_was_evaluated(rm_run):
    metrics, _ = read_run(rm_run)
    reward = RewardModel(str(rm_run), device="cpu")
    accuracy, margin = heldout_accuracy_and_margin(reward, OmegaConf.load(rm_run / "config.yaml"))
    assert accuracy == pytest.approx(metrics["eval_accuracy"])
    assert margin == pytest.approx(metrics["eval_margin"], abs=1e-5)
    again = RewardModel(str(rm_run / "model"), device="cpu")  # the run's model/ folder names the same run
    row = {"prompt": [{"role": "user", "content": "What is 2 + 2?"}]}
    assert again(row, ["4", "5"]) == pytest.approx(reward(row, ["4", "5"]), abs=1e-6)


def test_make_pairs_chooses_the_answer_the_trained_reward_model_scores_higher(rm_run, tmp_path):
    output = tmp_path / "pairs.jsonl"
    cfg = compose_make_pairs(
        "model=tiny-random",
        "num_prompts=4",
        "num_samples=3",
        "max_new_tokens=8",
        "require_finished=false",  # a random policy never emits EOS
        f"reward.model={rm_run}",
        f"output={output}",
        config_name="make_pairs",
    )
    stats = load_script("scripts/make_pairs.py").make_pairs(cfg, progress=False)
    assert (stats["prompts"], stats["scorer"]) == (4, str(rm_run)) and stats["pairs"] >= 1
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == stats["pairs"]
    reward = RewardModel(str(rm_run), device="cpu")
    for row in rows:
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        assert row["chosen_score"] >= row["rejected_score"] and chosen != rejected
        assert reward(row, [chosen, rejected]) == pytest.approx([row["chosen_score"], row["rejected_score"]], abs=1e-4)


@pytest.mark.slow
def test_a_fully_fine_tuned_reward_model_reloads_from_its_run(tmp_path):
    run_dir = tmp_path / "run"
    run_train("method=rm", *RM_FAST, "peft=none", f"hydra.run.dir={run_dir}")
    metrics, _ = read_run(run_dir)
    assert (run_dir / "model" / "config.json").is_file() and not (run_dir / "model" / "adapter_config.json").exists()
    assert metrics["eval_loss"] < metrics["before_training"]["eval_loss"]
    accuracy, margin = heldout_accuracy_and_margin(
        RewardModel(str(run_dir), device="cpu"), OmegaConf.load(run_dir / "config.yaml")
    )
    assert accuracy == pytest.approx(metrics["eval_accuracy"])
    assert margin == pytest.approx(metrics["eval_margin"], abs=1e-5)
