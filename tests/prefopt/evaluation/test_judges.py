"""prefopt/evaluation/judges.py: which judge a config gets, the checks that stop a missing or wrong judge before
anything loads (naming the path and what was expected), and the reward-model judge on a tiny reward model."""

import json

import pytest
import torch
from omegaconf import open_dict

from prefopt.errors import RecipeError
from prefopt.evaluation.judges import RewardModelJudge, load_judge, problems, resolve
from prefopt.models import load_model
from prefopt.recipe import load_recipe
from prefopt.validation import problems as config_problems
from tests.conftest import CONF, compose_config, recipe_and_setup
from tests.prefopt.evaluation.conftest import SMALL
from tests.prefopt.evaluation.test_runs import save_run_config


def tiny_reward_run(run_dir, seed=3):
    """A run directory as `make train-rm model=tiny-random peft=none` leaves it: config.yaml and a one-score model/."""
    cfg = compose_config(*SMALL, "method=rm", "peft=none")
    run_dir.mkdir(parents=True)
    save_run_config(cfg, run_dir)
    model = load_model(cfg.model, "fp32", seed=seed, model_class="sequence_classification")
    model.save_pretrained(str(run_dir / "model"))
    return run_dir


def test_auto_is_the_verifier_on_the_built_in_task_and_a_reward_model_when_one_is_given(tmp_path):
    assert resolve(compose_config()) == "verifier"
    assert resolve(compose_config("dataset=hh-rlhf")) == "none"
    assert resolve(compose_config("dataset=hh-rlhf", "judge.model=my/rm")) == "reward_model"
    assert resolve(compose_config("judge.model=my/rm")) == "reward_model"
    assert resolve(compose_config("judge=none")) == "none"
    cfg = compose_config()
    with open_dict(cfg):
        del cfg["judge"]  # a run configured before the judge group
    assert resolve(cfg) == "verifier"


def test_a_missing_or_wrong_judge_model_is_named_with_what_was_expected(tmp_path):
    def found(*overrides):
        return problems(compose_config(*overrides))

    assert found("judge=reward_model") == [
        "judge=reward_model needs judge.model=<a `make train-rm` run directory (config.yaml and model/), a folder "
        "holding a sequence-classification model with one score (config.json), or a Hub id of one>."
    ]
    (message,) = found("judge=reward_model", f"judge.model={tmp_path / 'nope'}")
    assert message.startswith(f"judge.model={tmp_path / 'nope'} does not exist: expected a `make train-rm` run")
    policy_run = tmp_path / "dpo-run"
    policy_run.mkdir()
    save_run_config(compose_config(*SMALL), policy_run)
    (message,) = found(f"judge.model={policy_run}")
    assert f"{policy_run} is not a reward model run (its config.yaml has method.recipe=recipes.dpo)" in message
    causal = tmp_path / "causal"
    load_model(compose_config(*SMALL).model, "fp32").save_pretrained(str(causal))
    (message,) = found(f"judge.model={causal}")
    assert f"judge.model={causal} holds a LlamaForCausalLM, not a reward model" in message
    assert found(f"judge.model={tiny_reward_run(tmp_path / 'rm')}") == []
    assert found("judge=reward_model", "judge.model=org/some-reward-model") == []  # a Hub id: checked when loading


def test_the_verifier_judges_the_built_in_task_only_and_an_llm_judge_needs_its_endpoint():
    (message,) = problems(compose_config("dataset=hh-rlhf", "judge=verifier"))
    assert "judge=verifier scores the built-in task's answers only, not dataset=hh-rlhf" in message
    assert problems(compose_config("judge=llm")) == [
        "judge=llm needs judge.base_url=<the endpoint up to /v1, e.g. http://localhost:8000/v1>.",
        "judge=llm needs judge.model=<the model name the endpoint serves>.",
    ]
    found = problems(
        compose_config(
            "judge=llm", "judge.base_url=localhost:8000", "judge.model=m", "judge.concurrency=0", "judge.template=x.txt"
        )
    )
    assert any("judge.base_url=localhost:8000: must start with http://" in p for p in found)
    assert any("judge.template=x.txt: no such file" in p for p in found)
    assert "judge.concurrency=0: must be a number > 0." in found


def test_judge_rules_are_config_rules_checked_before_training():
    cfg = compose_config(*SMALL, "judge=reward_model", "judge.model=/no/such/reward-model")
    recipe, setup = recipe_and_setup(cfg)
    assert any(
        p.startswith("judge.model=/no/such/reward-model does not exist") for p in config_problems(cfg, recipe, setup)
    )
    assert load_recipe(cfg.method.recipe)  # the config itself is otherwise fine
    with pytest.raises(RecipeError, match="judge.model=/no/such/reward-model does not exist"):
        load_judge(cfg)


def test_the_reward_model_judge_prefers_the_answer_its_model_scores_higher(tmp_path):
    run = tiny_reward_run(tmp_path / "rm")
    cfg = compose_config(*SMALL, f"judge.model={run}")
    judge = load_judge(cfg)
    assert isinstance(judge, RewardModelJudge) and judge.source == str(run)
    prompts = [[{"role": "user", "content": "What is 2 + 3?"}], "Name a color."]
    reference, policy = ["5", "red"], ["The answer is 5.", "Blue, like the sky."]
    judgement = judge.judge(prompts, reference, policy)
    scorer = judge.scorer
    for i, prompt in enumerate(prompts):
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        ref_score, pol_score = scorer({"prompt": messages}, [reference[i], policy[i]])
        assert (judgement.reference_scores[i], judgement.policy_scores[i]) == pytest.approx(
            (ref_score, pol_score), abs=1e-4
        )
        assert judgement.preferences[i] == (1.0 if pol_score > ref_score else 0.0 if pol_score < ref_score else 0.5)
    assert json.loads((run / "model" / "config.json").read_text())["architectures"] == [
        "LlamaForSequenceClassification"
    ]
    assert torch.isfinite(torch.tensor(judgement.policy_scores)).all()


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "judge").glob("*.yaml")))
def test_every_judge_option_composes_and_passes_its_checks_once_its_model_is_given(option, tmp_path):
    with open(CONF / "judge" / f"{option}.yaml") as f:
        assert f.readline().startswith("# "), "every config opens with a line on how to run it"
    given = {
        "reward_model": [f"judge.model={tiny_reward_run(tmp_path / 'rm')}"],
        "llm": ["judge.base_url=http://127.0.0.1:8000/v1", "judge.model=some-judge"],
    }
    cfg = compose_config(f"judge={option}", *given.get(option, []))
    assert cfg.judge.name == option and problems(cfg) == []
