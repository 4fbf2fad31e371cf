"""scripts/train.py with a judge, end to end on the tiny random model: DPO on a local file in Anthropic/hh-rlhf's
format judged by a reward model that `make train-rm` trained on other rows, and a judge that cannot be reached after
training, which keeps the run."""

import json
import random
import socket

import pytest

from tests.conftest import read_run, run_train

TINY = ["model=tiny-random", "logger=none", "train.max_steps=4", "eval_generation.max_new_tokens=8"]
QUESTIONS = ["What is the capital of {}?", "How do I say hello in {}?", "Tell me one fact about {}.", "Is {} far away?"]
PLACES = ["France", "Peru", "Japan", "Kenya", "Chile", "Norway", "Egypt", "India", "Canada", "Spain", "Ghana", "Laos"]


def hh_rlhf_file(path, n, seed):
    """`n` dialogues in Anthropic/hh-rlhf's layout (whole transcripts, chosen and rejected differing in the last
    assistant turn), some of them two turns long."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        place = rng.choice(PLACES)
        question = rng.choice(QUESTIONS).format(place)
        opening = f"\n\nHuman: Hi! I have a question, number {i}.\n\nAssistant: Sure, ask away." if i % 3 == 0 else ""
        dialogue = f"{opening}\n\nHuman: {question}"
        rows.append(
            {
                "chosen": f"{dialogue}\n\nAssistant: Happy to help: here is what I know about {place}.",
                "rejected": f"{dialogue}\n\nAssistant: No.",
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow  # two training runs and a judged evaluation (~1 min on 2 cores)
def test_dpo_on_hh_rlhf_data_is_judged_by_a_reward_model_trained_on_other_rows(tmp_path):
    rm_dir, dpo_dir = tmp_path / "rm", tmp_path / "dpo"
    data = ["dataset=hh-rlhf", "dataset.eval_split=null", "dataset.eval_fraction=0.25"]
    run_train(
        "method=rm",
        *TINY,
        *data,
        f"dataset.path={hh_rlhf_file(tmp_path / 'rm.jsonl', 48, 1)}",
        f"hydra.run.dir={rm_dir}",
    )
    result = run_train(
        "method=dpo",
        *TINY,
        *data,
        f"dataset.path={hh_rlhf_file(tmp_path / 'dpo.jsonl', 48, 2)}",
        "judge=reward_model",
        f"judge.model={rm_dir}",
        f"hydra.run.dir={dpo_dir}",
    )
    metrics, _ = read_run(dpo_dir)
    evaluation = json.loads((dpo_dir / "eval.json").read_text())
    judge, answers = evaluation["judge"], evaluation["answers"]
    samples = [json.loads(line) for line in (dpo_dir / "samples.jsonl").read_text().splitlines()]
    assert metrics["status"] == "completed" and evaluation["generation"] is None
    assert answers["num_prompts"] == len(samples) > 0 and judge["name"] == "reward_model"
    assert judge["model"] == str(rm_dir) and judge["num_prompts"] == len(samples) and judge["error"] is None
    for key in ("win_rate", "lc_win_rate", "win_rate_ci_low", "lc_win_rate_ci_high", "mean_score_policy_stderr"):
        assert 0 <= judge[key] <= 1 or key == "mean_score_policy_stderr", key
    assert {"prompt", "reference_answer", "policy_answer", "reference_reward", "policy_reward"} <= set(samples[0])
    assert any(len(s["prompt"]) == 3 for s in samples)  # multi-turn prompts through the chat template
    assert "reward model length-controlled win rate" in result.stdout + result.stderr


@pytest.mark.slow  # a training run (~20 s on 2 cores); the judge's failures are tested fast in tests/prefopt/evaluation
def test_a_judge_that_cannot_be_reached_after_training_keeps_the_run(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_dir = tmp_path / "run"
    result = run_train(
        "method=dpo",
        *TINY,
        "dataset.num_train=32",
        "dataset.num_eval=8",
        "eval_generation.max_prompts=8",
        "judge=llm",
        f"judge.base_url=http://127.0.0.1:{port}/v1",
        "judge.model=some-judge",
        "judge.max_retries=0",
        f"hydra.run.dir={run_dir}",
    )
    metrics, _ = read_run(run_dir)
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert metrics["status"] == "completed" and (run_dir / "model").is_dir()
    assert "cannot connect" in evaluation["judge"]["error"] and evaluation["generation"]["num_prompts"] == 8
    output = result.stdout + result.stderr
    assert f'make eval run={run_dir} ARGS="--force"' in output and "Training's results and eval.json are kept" in output
