"""prefopt/evaluation.py on the tiny random model: pair metrics equal TRL's, padding never changes a number,
generation is scored by the verifier, a policy equal to its reference scores zero, and runs load back."""

import json
import math

import pytest
import torch
from omegaconf import open_dict
from peft import LoraConfig, get_peft_model

from prefopt.adapters import lora_config
from prefopt.data import builtin, load_splits
from prefopt.errors import RecipeError
from prefopt.evaluation import (
    GenerationSettings,
    PolicyAndReference,
    encode_pair,
    encode_prompt,
    evaluate,
    format_report,
    generate,
    heldout_tasks,
    load_run,
    pair_metrics,
    pairs_from_trainer_metrics,
    score_answers,
    sequence_logps,
    write_eval,
)
from prefopt.models import load_model, load_tokenizer
from prefopt.run_files import save_config
from recipes import dpo
from tests.conftest import compose_config

SMALL = ["model=tiny-random", "logger=none", "dataset.num_train=16", "dataset.num_eval=16"]


def perturb(model, scale, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return model


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(compose_config(*SMALL).model)


@pytest.fixture(scope="module")
def prompts(tokenizer):
    tasks = heldout_tasks(compose_config(*SMALL).dataset, 32)
    return tasks, [encode_prompt(tokenizer, [{"role": "user", "content": t.prompt}]) for t in tasks]


def test_pair_metrics_equal_what_trls_dpo_trainer_logs(tokenizer):
    cfg = compose_config("method=dpo", "peft=none", "train.per_device_eval_batch_size=16", *SMALL)
    reference = load_model(cfg.model, "fp32", seed=cfg.train.seed)
    policy = perturb(load_model(cfg.model, "fp32", seed=cfg.train.seed), 0.05)
    train, held_out = load_splits(cfg.dataset, "paired")
    trainer = dpo.build_trainer(
        cfg,
        model=policy,
        ref_model=reference,
        tokenizer=tokenizer,
        train_dataset=train,
        eval_dataset=held_out,
        peft_config=None,
        callbacks=[],
    )
    # The same token split as TRL's: prompt ids, then what prompt+answer adds.
    for row, prepared in zip(held_out, trainer.eval_dataset):
        assert encode_pair(tokenizer, row["prompt"], row["chosen"], row["rejected"]) == (
            prepared["prompt_ids"],
            prepared["chosen_ids"],
            prepared["rejected_ids"],
        )
    trl = trainer.evaluate()  # one batch of 16 pairs: TRL's batch means are the means over all pairs
    ours = pair_metrics(
        PolicyAndReference(policy, reference), tokenizer, held_out, cfg.method.beta, max_length=cfg.train.max_length
    )
    assert ours["num_pairs"] == 16 and 0 < ours["reward_accuracy"] < 1
    for name, trl_name in [
        ("loss", "eval_loss"),
        ("reward_accuracy", "eval_rewards/accuracies"),
        ("reward_margin", "eval_rewards/margins"),
        ("chosen_reward", "eval_rewards/chosen"),
        ("rejected_reward", "eval_rewards/rejected"),
        ("chosen_logps", "eval_logps/chosen"),
    ]:
        assert ours[name] == pytest.approx(trl[trl_name], rel=1e-4, abs=1e-6), name


def test_sequence_logps_do_not_depend_on_what_else_is_in_the_batch(tokenizer):
    model = perturb(load_model(compose_config(*SMALL).model, "fp32", seed=1), 0.05)
    sequences = []
    for row in builtin.build_pairs(4, 4)["test"]:
        prompt_ids, chosen_ids, rejected_ids = encode_pair(tokenizer, row["prompt"], row["chosen"], row["rejected"])
        sequences += [(prompt_ids, chosen_ids), (prompt_ids, rejected_ids)]
    together = sequence_logps(model, sequences, batch_size=8, pad_id=tokenizer.pad_token_id)
    alone = torch.cat([sequence_logps(model, [s], batch_size=1, pad_id=tokenizer.pad_token_id) for s in sequences])
    assert len({len(p) + len(c) for p, c in sequences}) > 1  # the batch really is padded
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-4)
    # and the sum is over completion tokens only: by hand for the first sequence
    prompt_ids, completion_ids = sequences[0]
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1], -1)
    by_hand = sum(logp[len(prompt_ids) - 1 + i, token].item() for i, token in enumerate(completion_ids))
    assert together[0].item() == pytest.approx(by_hand, abs=1e-4)


def test_left_padded_generation_matches_one_prompt_at_a_time(tokenizer, prompts):
    prompt_ids = prompts[1][:6]
    assert len({len(p) for p in prompt_ids}) > 1  # the batch really is left-padded
    model = perturb(load_model(compose_config(*SMALL).model, "fp32", seed=42), 0.3)
    batched = generate(model, tokenizer, prompt_ids, max_new_tokens=8, batch_size=16)
    alone = [generate(model, tokenizer, [p], max_new_tokens=8, batch_size=1).ids[0] for p in prompt_ids]
    assert len({tuple(a) for a in batched.ids}) > 3  # varied answers, not one token repeated
    assert batched.ids == alone
    assert all(len(a) <= 8 for a in batched.ids)
    # The log-probs kept from generation equal a fresh forward pass over prompt + answer.
    forward = sequence_logps(model, list(zip(prompt_ids, batched.ids)), 16, tokenizer.pad_token_id)
    torch.testing.assert_close(torch.tensor(batched.logps, dtype=torch.float64), forward, rtol=1e-5, atol=1e-4)


def test_sampling_gives_n_answers_per_prompt_reproducibly(tokenizer, prompts):
    _, prompt_ids = prompts
    model = load_model(compose_config(*SMALL).model, "fp32", seed=42)
    draws = []
    for _ in range(2):
        torch.manual_seed(3)
        draws.append(generate(model, tokenizer, prompt_ids[:3], max_new_tokens=6, batch_size=8, num_samples=4))
    assert len(draws[0].ids) == 12 and draws[0].ids == draws[1].ids
    assert len({tuple(a) for a in draws[0].ids}) > 1


def test_a_policy_equal_to_its_reference_scores_zero(tokenizer):
    cfg = compose_config(
        *SMALL, "eval_generation.max_prompts=8", "eval_generation.max_new_tokens=6", "eval_generation.num_samples=2"
    )
    base = load_model(cfg.model, "fp32", seed=cfg.train.seed)
    policy = get_peft_model(base, lora_config(cfg.peft))  # LoRA B starts at zero: policy == reference
    settings = GenerationSettings.from_config(cfg.eval_generation)
    result = evaluate(cfg, PolicyAndReference(policy), tokenizer, settings)
    pairs, gen = result["pairs"], result["generation"]
    assert pairs["loss"] == pytest.approx(math.log(2), abs=1e-6) and pairs["reward_accuracy"] == 0.0
    assert pairs["reward_margin"] == pytest.approx(0.0, abs=1e-6) and pairs["num_pairs"] == 16
    assert gen["num_prompts"] == 8 and gen["kl_policy_reference"] == pytest.approx(0.0, abs=1e-5)
    assert gen["ties"] == 8 and gen["win_rate"] == 0.5
    assert gen["pass_rate"]["policy"] == gen["pass_rate"]["reference"]
    assert [s["policy_answer"] for s in gen["samples"]] == [s["reference_answer"] for s in gen["samples"]]
    assert gen["sampled"]["num_prompts"] == 16 and gen["sampled"]["temperature"] == 1.0
    report = format_report(result)
    assert "reward accuracy (16 pairs)" in report and "pass rate (8 prompts, greedy)" in report


def test_score_answers_counts_passes_wins_and_length():
    tasks = [
        builtin.Task("sum", "What is 2 + 3?", "5"),
        builtin.Task("capital", "Capital of Peru?", "Lima"),
        builtin.Task("count", "Name exactly 2 colors", "", n=2),
        builtin.Task("uppercase", "word", "APPLE"),
    ]
    policy = ["5", "lima.", "red, blue", "apple"]
    reference = ["The answer is 5.", "Lima", "red", "apple"]
    scores, policy_pass, reference_pass = score_answers(tasks, policy, reference)
    assert (policy_pass, reference_pass) == ([True, True, True, False], [False, True, False, False])
    assert scores["pass_rate"] == {"reference": 0.25, "policy": 0.75}
    assert (scores["wins"], scores["losses"], scores["ties"]) == (2, 0, 2)
    assert scores["win_rate"] == (2 + 0.5 * 2) / 4
    assert scores["pass_rate_by_kind"]["policy"] == {"capital": 1.0, "count": 1.0, "sum": 1.0, "uppercase": 0.0}
    assert scores["mean_length_chars"] == {"reference": (16 + 4 + 3 + 5) / 4, "policy": (1 + 5 + 9 + 5) / 4}


def test_heldout_prompts_are_distinct_and_never_trained_on():
    cfg = compose_config("dataset.num_train=64", "dataset.num_eval=64")
    tasks = heldout_tasks(cfg.dataset, 32)
    train_prompts = {r["prompt"][0]["content"] for r in builtin.build_pairs(64, 64)["train"]}
    assert len(tasks) == 32 and len({t.prompt for t in tasks}) == 32
    assert {t.kind for t in tasks} == set(builtin.KINDS) and not train_prompts & {t.prompt for t in tasks}


def save_run_config(cfg, run_dir):
    """config.yaml as the launcher writes it: the job's config, without Hydra's own node."""
    with open_dict(cfg):
        del cfg["hydra"]
    save_config(cfg, run_dir)


def fake_lora_run(run_dir, *overrides):
    """A run directory as train.py leaves it (config.yaml + model/ adapter), with LoRA weights moved off zero."""
    cfg = compose_config(*SMALL, *overrides)
    run_dir.mkdir(parents=True)
    save_run_config(cfg, run_dir)
    base = load_model(cfg.model, "fp32", seed=cfg.train.seed)
    policy = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    policy.save_pretrained(str(run_dir / "model"))
    return policy


def test_load_run_restores_the_lora_policy_and_its_reference(tmp_path):
    saved = fake_lora_run(tmp_path / "run")
    cfg, tokenizer, models = load_run(tmp_path / "run")
    ids = torch.tensor([encode_prompt(tokenizer, [{"role": "user", "content": "What is 2 + 3?"}])])
    with torch.no_grad():
        policy_logits = models.policy(ids).logits
        torch.testing.assert_close(policy_logits, saved(ids).logits)
        with models.reference_model() as reference, saved.disable_adapter():
            reference_logits = reference(ids).logits
            torch.testing.assert_close(reference_logits, saved(ids).logits)
    assert not torch.allclose(policy_logits, reference_logits)  # the adapter is on for the policy only
    assert cfg.model.name == "tiny-random" and models.reference is None


def test_load_run_restores_a_full_model_and_loads_the_base_again(tmp_path):
    cfg = compose_config(*SMALL, "peft=none")
    (tmp_path / "run").mkdir()
    save_run_config(cfg, tmp_path / "run")
    trained = perturb(load_model(cfg.model, "fp32", seed=cfg.train.seed), 0.05)
    trained.save_pretrained(str(tmp_path / "run" / "model"))
    _, _, models = load_run(tmp_path / "run")
    base = load_model(cfg.model, "fp32", seed=cfg.train.seed)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(models.policy(ids).logits, trained(ids).logits)
        torch.testing.assert_close(models.reference(ids).logits, base(ids).logits)


def test_load_run_says_what_is_missing(tmp_path):
    with pytest.raises(RecipeError, match="not a run directory: no config.yaml"):
        load_run(tmp_path)
    save_run_config(compose_config(*SMALL), tmp_path)
    with pytest.raises(RecipeError, match="has no model/: the run did not finish training"):
        load_run(tmp_path)


def test_eval_json_is_never_overwritten_without_force(tmp_path):
    write_eval(tmp_path, {"first": 1})
    with pytest.raises(RecipeError, match="eval.json exists: pass --force"):
        write_eval(tmp_path, {"second": 2})
    assert json.loads((tmp_path / "eval.json").read_text()) == {"first": 1}
    write_eval(tmp_path, {"second": 2}, force=True)
    assert json.loads((tmp_path / "eval.json").read_text()) == {"second": 2}


def test_generation_settings_come_from_the_config_then_the_command_line():
    settings = GenerationSettings.from_config(compose_config().eval_generation, max_new_tokens=8, num_samples=None)
    assert (settings.max_prompts, settings.max_new_tokens, settings.num_samples) == (32, 8, 0)
    with pytest.raises(RecipeError, match="max_prompts, max_new_tokens and batch_size must be >= 1"):
        GenerationSettings.from_config({"max_prompts": 0})
    with pytest.raises(RecipeError, match="temperature > 0 when sampling"):
        GenerationSettings.from_config({"num_samples": 2, "temperature": 0.0})


def test_trainer_metrics_stand_in_for_pair_metrics_only_where_they_mean_the_same():
    metrics = {
        "eval_loss": 0.4,
        "eval_rewards/accuracies": 0.9,
        "eval_rewards/margins": 1.2,
        "eval_rewards/chosen": 0.1,
        "eval_rewards/rejected": -1.1,
        "eval_logps/chosen": -9.0,
        "eval_logps/rejected": -30.0,
    }
    pairs = pairs_from_trainer_metrics(compose_config(*SMALL), metrics)
    assert pairs["reward_accuracy"] == 0.9 and pairs["loss"] == 0.4 and pairs["num_pairs"] == 16
    assert pairs_from_trainer_metrics(compose_config(*SMALL, "method.loss_type=[sigmoid,sft]"), metrics)["loss"] is None
    assert pairs_from_trainer_metrics(compose_config(*SMALL, "method=kto"), metrics) is None  # other definitions
    assert pairs_from_trainer_metrics(compose_config(*SMALL, "method=orpo"), metrics) is None
