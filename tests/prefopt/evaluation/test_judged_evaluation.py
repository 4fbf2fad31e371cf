"""prefopt/evaluation/runs.py with judges, on the tiny random model: answers on any dataset's held-out prompts go to
samples.jsonl, eval.json gets a flat judge section, the verifier checks the judge on the built-in task, and a judge
that fails leaves the rest of the evaluation in place."""

import json

import pytest
from peft import LoraConfig, get_peft_model

from prefopt.evaluation.generation import GenerationSettings
from prefopt.evaluation.judges import UnavailableJudge
from prefopt.evaluation.models import PolicyAndReference
from prefopt.evaluation.report import flat_metrics, format_report
from prefopt.evaluation.runs import evaluate, write_eval
from prefopt.models import load_model
from tests.conftest import compose_config
from tests.prefopt.evaluation.conftest import SMALL
from tests.prefopt.evaluation.test_judges import tiny_reward_run

QUICK = ["eval_generation.max_new_tokens=6", "eval_generation.max_prompts=6"]
JUDGE_KEYS = {
    "name",
    "model",
    "num_prompts",
    "win_rate",
    "win_rate_ci_low",
    "win_rate_ci_high",
    "lc_win_rate",
    "lc_win_rate_ci_low",
    "lc_win_rate_ci_high",
    "length_coefficient",
    "length_scale_chars",
    "confidence",
    "bootstrap_resamples",
    "wins",
    "losses",
    "ties",
    "mean_length_chars_reference",
    "mean_length_chars_policy",
    "mean_score_reference",
    "mean_score_reference_stderr",
    "mean_score_policy",
    "mean_score_policy_stderr",
    "verifier_agreement",
    "verifier_agreement_pairs",
    "judgments",
    "unparsed",
    "first_position_rate",
    "consistent_rate",
    "error",
}


def local_pairs(path, n=24):
    """A dataset=local file: single-turn text prompts and two-turn conversations, a quarter held out."""
    rows = []
    for i in range(n):
        if i % 2:
            prompt = [
                {"role": "user", "content": f"Hi, I have question {i}."},
                {"role": "assistant", "content": "Sure, go ahead."},
                {"role": "user", "content": f"What is {i} + {i}?"},
            ]
            chosen, rejected = [{"role": "assistant", "content": str(2 * i)}], [{"role": "assistant", "content": "No."}]
        else:
            prompt = [{"role": "user", "content": f"Name something blue, number {i}."}]
            chosen, rejected = (
                [{"role": "assistant", "content": "The sky."}],
                [{"role": "assistant", "content": "Go away."}],
            )
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def moved_policy(cfg):
    base = load_model(cfg.model, "fp32", seed=cfg.train.seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    return PolicyAndReference(get_peft_model(base, config))


def run_evaluation(tmp_path, tokenizer, *overrides, judge=None):
    own_data = any(o.startswith("dataset=") for o in overrides)
    cfg = compose_config(*(SMALL[:2] if own_data else [*SMALL, "dataset.num_eval=4"]), *QUICK, *overrides)
    settings = GenerationSettings.from_config(cfg.eval_generation)
    return cfg, evaluate(cfg, moved_policy(cfg), tokenizer, settings, judge=judge)


def test_a_reward_model_judges_answers_on_your_own_data(tmp_path, tokenizer):
    data = local_pairs(tmp_path / "pairs.jsonl")
    rm = tiny_reward_run(tmp_path / "rm")
    cfg, result = run_evaluation(
        tmp_path, tokenizer, "dataset=local", f"dataset.path={data}", "dataset.eval_fraction=0.25", f"judge.model={rm}"
    )
    answers, judge = result["answers"], result["judge"]
    assert result["generation"] is None  # no verifier for this data
    assert (
        answers["num_prompts"] == 6 and answers["decoding"] == "greedy" and answers["samples_file"] == "samples.jsonl"
    )
    assert set(judge) == JUDGE_KEYS and judge["name"] == "reward_model" and judge["model"] == str(rm)
    samples = result["samples"]
    assert len(samples) == 6 and judge["wins"] + judge["losses"] + judge["ties"] == 6
    assert judge["win_rate"] == pytest.approx(sum(s["judge_preference"] for s in samples) / 6)
    assert judge["mean_score_policy"] == pytest.approx(sum(s["policy_reward"] for s in samples) / 6)
    assert judge["win_rate_ci_low"] <= judge["win_rate"] <= judge["win_rate_ci_high"]
    assert 0 < judge["lc_win_rate"] < 1 and judge["verifier_agreement"] is None
    for s in samples:
        assert s["judge_preference"] == (
            1.0
            if s["policy_reward"] > s["reference_reward"]
            else 0.0
            if s["policy_reward"] < s["reference_reward"]
            else 0.5
        )
        assert s["policy_length_chars"] == len(s["policy_answer"]) and s["policy_length_tokens"] <= 6
    assert any(isinstance(s["prompt"], list) and len(s["prompt"]) == 3 for s in samples)  # conversations kept whole
    assert any(s["policy_answer"] != s["reference_answer"] for s in samples)

    write_eval(tmp_path, result)
    written = json.loads((tmp_path / "eval.json").read_text())
    assert "samples" not in written and written["judge"] == json.loads(json.dumps(judge))
    lines = (tmp_path / "samples.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == json.loads(json.dumps(samples))
    table = format_report(result)
    for row in ("mean reward (+- stderr)", "reward model win rate [95% CI]", "reward model length-controlled win rate"):
        assert row in table, row
    assert flat_metrics(result)["eval/judge/lc_win_rate"] == judge["lc_win_rate"]


def test_on_the_built_in_task_the_verifier_checks_the_judge(tmp_path, tokenizer):
    rm = tiny_reward_run(tmp_path / "rm")
    _, result = run_evaluation(tmp_path, tokenizer, f"judge.model={rm}", "eval_generation.max_prompts=8")
    generation, judge, samples = result["generation"], result["judge"], result["samples"]
    assert generation["num_prompts"] == 8 and judge["name"] == "reward_model"
    one_passes = [s for s in samples if s["policy_pass"] != s["reference_pass"]]
    assert judge["verifier_agreement_pairs"] == len(one_passes)
    if one_passes:
        agreement = [s["judge_preference"] if s["policy_pass"] else 1 - s["judge_preference"] for s in one_passes]
        assert judge["verifier_agreement"] == pytest.approx(sum(agreement) / len(agreement))
    assert [s["policy_answer"] for s in samples] == [s["policy_answer"] for s in generation["samples"]]

    _, plain = run_evaluation(tmp_path, tokenizer, "eval_generation.max_prompts=8")  # judge=auto: the verifier
    assert plain["judge"]["name"] == "verifier" and plain["judge"]["win_rate"] == plain["generation"]["win_rate"]
    assert plain["judge"]["mean_score_policy"] == plain["generation"]["pass_rate"]["policy"]
    _, none = run_evaluation(tmp_path, tokenizer, "judge=none", "eval_generation.max_prompts=8")
    assert none["judge"] is None and none["generation"] is None and len(none["samples"]) == 8
    assert "judge_preference" not in none["samples"][0] and "policy_length_chars" in none["samples"][0]


def test_a_judge_that_fails_leaves_the_answers_and_says_so(tmp_path, tokenizer):
    data = local_pairs(tmp_path / "pairs.jsonl")
    failing = UnavailableJudge("llm", "big-judge", "the judge at http://127.0.0.1:9/v1 failed 4 times: cannot connect")
    _, result = run_evaluation(
        tmp_path, tokenizer, "dataset=local", f"dataset.path={data}", "dataset.eval_fraction=0.25", judge=failing
    )
    assert result["judge"] == {"name": "llm", "model": "big-judge", "error": failing.error}
    assert result["answers"]["num_prompts"] == 6 and len(result["samples"]) == 6
    (row,) = [line for line in format_report(result).splitlines() if line.startswith("judge: LLM judge")]
    assert row.split()[-5:] == ["failed:", "see", "the", "message", "above"]


def test_a_dataset_without_held_out_prompts_says_so(tmp_path, tokenizer):
    data = local_pairs(tmp_path / "pairs.jsonl")
    _, result = run_evaluation(
        tmp_path, tokenizer, "dataset=local", f"dataset.path={data}", "dataset.eval_fraction=0.25", "train.max_length=8"
    )
    assert result["answers"]["num_prompts"] == 0 and result["answers"]["skipped_too_long"] == 6
    assert (
        "has no held-out prompts to answer: all 6 are train.max_length=8 tokens or longer" in result["answers"]["note"]
    )
    assert "samples" not in result and result["judge"] is None
