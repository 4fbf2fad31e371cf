"""Online DPO (recipes/online_dpo.py, its rounds in prefopt/online_dpo.py) in-process through the launcher's train() on
the tiny random model: each round trains on pairs of the policy's own samples, against the base model; a round whose
answers all tie trains nothing and says so; what the config refuses."""

import csv
import json
import logging

import pytest
import torch
from omegaconf import open_dict

import prefopt.online_dpo as online_dpo
from prefopt.config import compose_config
from prefopt.data.pairs import RewardModel
from prefopt.errors import RecipeError
from prefopt.models import load_model
from prefopt.online_dpo import COLUMNS
from prefopt.run import plan_run
from tests.conftest import load_script
from tests.prefopt.data.test_pairs import build_tiny_reward_model

# A random model ends an answer only by chance: let cut-off answers be chosen.
TINY_ONLINE = [
    "method=online-dpo",
    "model=tiny-random",
    "logger=none",
    "dataset.num_train=32",
    "dataset.num_eval=16",
    "online.rounds=2",
    "online.prompts_per_round=6",
    "online.samples_per_prompt=3",
    "online.max_new_tokens=10",
    "online.steps_per_round=2",
    "online.require_finished=false",
    "online.eval_prompts=6",
    "eval_generation.max_prompts=8",
    "eval_generation.max_new_tokens=8",
    "eval_before_training=false",
]


def online_config(tmp_path, *overrides):
    """The composed config as the launcher sees it inside its Hydra run (no hydra: section; the run directory set)."""
    base = [
        o for o in TINY_ONLINE if not (o.startswith("dataset.") and any(x.startswith("dataset=") for x in overrides))
    ]
    cfg = compose_config(*base, *overrides, output_dir=str(tmp_path / "run"))
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture
def trained(monkeypatch):
    """train(cfg, run_dir) of scripts/train.py, recording the PreparedRun it trained."""
    import prefopt.run

    runs, prepare = [], prefopt.run.prepare_run
    script = load_script("scripts/train.py")

    def recording(*args, **kwargs):
        runs.append(prepare(*args, **kwargs))
        return runs[-1]

    monkeypatch.setattr(script, "prepare_run", recording)
    return lambda cfg, run_dir: (script.train(cfg, run_dir), runs[-1])


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def sampled(monkeypatch):
    """Every call of the loop's sampling: the model it sampled and the answers it returned."""
    calls = []
    real = online_dpo.sample_answers

    def spy(model, tokenizer, prompts, **kwargs):
        answers, finished = real(model, tokenizer, prompts, **kwargs)
        lora = {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name}
        calls.append(
            {"model": model, "adapters": set(getattr(model, "peft_config", {})), "answers": answers, "lora": lora}
        )
        return answers, finished

    monkeypatch.setattr(online_dpo, "sample_answers", spy)
    return calls


def test_each_round_trains_on_pairs_of_the_current_policys_own_samples_against_the_base(tmp_path, sampled, trained):
    reward_dir = build_tiny_reward_model(tmp_path / "rm")
    # Plain DPO (no SFT term), so that each round's first loss is ln 2.
    cfg = online_config(tmp_path, f"reward.model={reward_dir}", "method.loss_type=[sigmoid]")
    run_dir = tmp_path / "run"
    metrics, run = trained(cfg, run_dir)
    policy = run.models.policy

    assert metrics["status"] == "completed" and metrics["trained_rounds"] == 2 and metrics["method"] == "online-dpo"
    # Round 1 sampled the starting model; round 2 the policy round 1 trained, the very object that trained on.
    assert len(sampled) == 2 and sampled[0]["adapters"] == set() and sampled[1]["adapters"] == {"default"}
    assert sampled[1]["model"] is policy
    reward = RewardModel(str(reward_dir), device="cpu")
    for round_number, call in enumerate(sampled, start=1):
        round_dir = run_dir / f"round-{round_number}"
        samples, pairs = read_jsonl(round_dir / "samples.jsonl"), read_jsonl(round_dir / "pairs.jsonl")
        assert [row["samples"] for row in samples] == call["answers"]
        assert len(pairs) >= 3
        answers_of = {row["prompt"][0]["content"]: row["samples"] for row in samples}
        for pair in pairs:
            chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
            drawn = answers_of[pair["prompt"][0]["content"]]
            assert chosen in drawn and rejected in drawn  # both answers were sampled from the policy this round
            chosen_score, rejected_score = reward(pair, [chosen, rejected])
            assert chosen_score > rejected_score
            assert (pair["chosen_score"], pair["rejected_score"]) == pytest.approx((chosen_score, rejected_score))
        record = json.loads((round_dir / "round.json").read_text())
        assert record["row"]["pairs"] == len(pairs) and record["training"]["trained_steps"] == 2
        assert record["row"]["train_loss"] == pytest.approx(0.6931, abs=0.01)  # DPO starts at ln 2

    # The reference stayed the base: TRL's frozen copy of the adapter ("ref") is gone, and with the adapter
    # disabled the policy computes what the untrained model computes.
    assert set(policy.peft_config) == {"default"}
    final = {name: p for name, p in policy.named_parameters() if "lora_" in name}
    assert set(final) == set(sampled[1]["lora"]) and all(p.requires_grad for p in final.values())
    assert any(not torch.equal(final[name], sampled[1]["lora"][name]) for name in final)  # round 2 trained it on
    base = load_model(cfg.model, "fp32", seed=cfg.train.seed).eval()
    ids = torch.tensor([[5, 9, 20, 33, 41]])
    with torch.no_grad(), policy.disable_adapter():
        torch.testing.assert_close(policy(input_ids=ids).logits, base(input_ids=ids).logits)
    assert (run_dir / "model" / "adapter_config.json").is_file()
    # The launcher's files, as after any training: the last round's trainer evaluated the held-out pairs.
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert evaluation["pairs"]["source"] == "trl (metrics.json)" and evaluation["generation"]["num_prompts"] == 8
    assert metrics["eval_rewards/accuracies"] is not None and len(metrics["rounds_table"]) == 2


def test_a_round_whose_answers_all_tie_trains_nothing_and_says_so(tmp_path, caplog, trained):
    cfg = online_config(tmp_path)  # the built-in verifier: random text scores 0 everywhere
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="prefopt.online_dpo"):
        metrics, _ = trained(cfg, run_dir)
    for round_number in (1, 2):
        assert f"round {round_number}: every prompt's 3 answers scored the same; nothing to train" in caplog.text
        assert (run_dir / f"round-{round_number}" / "pairs.jsonl").read_text() == ""
    assert metrics["status"] == "nothing trained" and metrics["trained_rounds"] == 0
    assert "no round trained: every round's answers tied" in caplog.text
    assert not (run_dir / "model").exists() and not (run_dir / "eval.json").exists()  # nothing trained
    with (run_dir / "rounds.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["round"] for row in rows] == ["1", "2"] and tuple(rows[0]) == COLUMNS
    assert all(row["pairs"] == "0" and row["trained_steps"] == "0" and row["ties"] == "6" for row in rows)
    assert all(row["pass_rate"] == row["reference_pass_rate"] for row in rows)  # an untrained policy
    table = (run_dir / "rounds.md").read_text()
    assert [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")][2:] == ["1", "2"]
    assert (run_dir / "rounds.png").stat().st_size > 1000


def test_prompts_rotate_through_the_pool_round_by_round():
    settings = online_dpo.OnlineSettings(prompts_per_round=3)
    pool = list(range(7))
    assert [online_dpo.prompts_of_round(pool, settings, k) for k in (1, 2, 3)] == [[0, 1, 2], [3, 4, 5], [6, 0, 1]]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("online.samples_per_prompt=1", "best against worst needs 2 or more"),
        ("online.rounds=0", "online.rounds=0: must be a whole number >= 1"),
        ("+online.round=3", "online: unknown keys round"),
        ("online.top_p=0", "0 < top_p <= 1"),
        ("ref=precomputed", "ref=precomputed is not supported"),
        ("method.precompute_ref_log_probs=auto", "precompute_ref_log_probs must be false"),
        ("dataset=local", "dataset=local gives neither"),
        ("reward.model=outputs/rm/no-such-run", "reward.model=outputs/rm/no-such-run does not exist"),
        ("train.learning_rate=-1", "learning_rate"),
    ],
)
def test_configs_the_loop_cannot_run_are_refused_before_anything_loads(tmp_path, override, message):
    with pytest.raises(RecipeError, match=message):
        plan_run(online_config(tmp_path, override))  # the launcher's first step: nothing loaded, nothing written
    assert not (tmp_path / "run").exists()
