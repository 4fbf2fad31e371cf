"""recipes/sft.py on the tiny random model: it trains on completions only, lowers the loss, saves an adapter that
reloads as the model it evaluated, and that adapter is a valid start and reference for DPO (ref=sft_adapter)."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from trl import SFTConfig

from prefopt.data import load_splits
from prefopt.data.checks import boundaries
from prefopt.evaluation.logprobs import pair_metrics, sequence_logps
from prefopt.evaluation.models import PolicyAndReference
from prefopt.evaluation.runs import load_run
from prefopt.health import health_callbacks
from prefopt.memory import plan
from prefopt.models import load_model, load_tokenizer
from prefopt.run import trl_config
from prefopt.run_files import EVAL_FILE, LOG_HISTORY_FILE
from tests.conftest import FAST, compose_config, read_run, recipe_and_setup, run_train

LN2_FLOAT32 = float(torch.tensor(math.log(2), dtype=torch.float32))
# 8 steps at a higher learning rate than the LoRA default move the tiny model's loss clearly; no LoRA dropout, so
# that a DPO stage started from this adapter computes policy and reference alike.
SFT_FAST = [
    *FAST,
    "train.max_steps=8",
    "train.learning_rate=1e-3",
    "train.logging_steps=1",
    "peft.lora_dropout=0",
    "eval_generation.max_prompts=4",
]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sft") / "run"
    run_train("method=sft", *SFT_FAST, f"hydra.run.dir={run_dir}")
    return run_dir


def logged(run_dir, name: str) -> list[float]:
    history = json.loads((run_dir / LOG_HISTORY_FILE).read_text())["log_history"]
    return [entry[name] for entry in history if name in entry]


def test_the_recipe_has_no_reference_and_its_loss_covers_the_completion_only():
    cfg = compose_config("method=sft", "model=tiny-random", "logger=none", "dataset.num_train=4", "dataset.num_eval=2")
    recipe, setup = recipe_and_setup(cfg)
    assert (recipe.data_format, recipe.uses_reference, setup.reference) == ("sft", False, "none")
    args = trl_config(cfg)
    assert isinstance(args, SFTConfig) and args.completion_only_loss is True
    tokenizer = load_tokenizer(cfg.model)
    train, held_out = load_splits(cfg.dataset, recipe.data_format)
    trainer = recipe.build_trainer(
        cfg,
        args=args,
        model=load_model(cfg.model, "fp32"),
        ref_model=None,
        tokenizer=tokenizer,
        train_dataset=train,
        eval_dataset=held_out,
        peft_config=None,
        callbacks=[],
    )
    assert len(trainer.train_dataset) == len(train) == 4
    for row, prepared in zip(train, trainer.train_dataset):
        (boundary,) = boundaries(tokenizer, [row["prompt"]], [row["completion"]])
        assert prepared["input_ids"] == boundary.full_ids
        # The prompt (chat markers and the question) is masked out, every completion token trained on.
        assert prepared["labels"] == [-100] * boundary.shared + boundary.full_ids[boundary.shared :]


def test_the_monitor_has_no_stuck_loss_rule_and_the_memory_estimate_no_reference():
    cfg = compose_config("method=sft", "model=llama3-8b", "hardware=40gb")
    recipe, setup = recipe_and_setup(cfg)
    (monitor,) = health_callbacks(cfg, recipe)
    assert monitor.loss_at_start is None and not monitor.rewards_are_log_ratios
    found = plan(cfg, recipe, setup)
    assert found.setup.rows_per_example == 1 and found.setup.reference == "none" and found.choice is not None


def test_training_lowers_the_loss_and_writes_the_run_files(sft_run):
    metrics, config = read_run(sft_run)
    assert (metrics["method"], metrics["status"], config["method"]["recipe"]) == ("sft", "completed", "recipes.sft")
    losses = logged(sft_run, "loss")
    assert len(losses) == 8 and all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0] - 0.1, losses
    before = metrics["before_training"]
    assert math.isfinite(before["eval_loss"]) and metrics["eval_loss"] < before["eval_loss"] - 0.05
    assert metrics["beta"] is None


def test_the_declared_metrics_are_what_sft_trainer_logs(sft_run):
    recipe, _ = recipe_and_setup(compose_config("method=sft"))
    metrics, _ = read_run(sft_run)
    for name in recipe.logged_metrics:
        assert logged(sft_run, name), f"training logged no {name}"
        assert f"eval_{name}" in metrics, f"no eval_{name} in metrics.json"


def test_the_generation_evaluation_compares_with_the_base_and_skips_pair_rewards(sft_run):
    result = json.loads((sft_run / EVAL_FILE).read_text())
    gen = result["generation"]
    assert gen["num_prompts"] == 4 and gen["kl_policy_reference"] > 0  # trained away from the base
    assert set(gen["pass_rate"]) == {"policy", "reference"}
    assert result["pairs"] is None and "method=sft has no beta" in result["pairs_skipped"]


def completion_nll(model, tokenizer, rows) -> float:
    """Mean negative log-likelihood per completion token, the prompt tokenized as SFTTrainer tokenizes it."""
    found = boundaries(tokenizer, rows["prompt"], rows["completion"])
    sequences = [(b.full_ids[: b.shared], b.full_ids[b.shared :]) for b in found]
    total = sequence_logps(model, sequences, batch_size=16, pad_id=tokenizer.pad_token_id).sum()
    return float(-total / sum(len(completion) for _, completion in sequences))


def test_the_saved_adapter_reloads_as_the_model_that_was_evaluated(sft_run):
    metrics, _ = read_run(sft_run)
    cfg, tokenizer, models = load_run(sft_run)
    _, held_out = load_splits(cfg.dataset, "sft")  # 16 rows: one eval batch, so eval_loss is their token mean
    assert completion_nll(models.policy, tokenizer, held_out[:]) == pytest.approx(metrics["eval_loss"], rel=1e-5)
    with models.reference_model() as base:  # the adapter disabled: the model before training
        base_nll = completion_nll(base, tokenizer, held_out[:])
    assert base_nll == pytest.approx(metrics["before_training"]["eval_loss"], rel=1e-5)
    assert (sft_run / "model" / "tokenizer_config.json").is_file()


def test_dpo_starts_from_the_sft_adapter_and_is_measured_against_it(sft_run, tmp_path):
    run_dir = tmp_path / "dpo"
    run_train(
        "method=dpo",
        "method.loss_type=[sigmoid]",  # plain DPO: its loss starts at ln 2
        *FAST,
        "train.max_steps=2",
        "train.logging_steps=1",
        "eval_generation.enabled=false",
        "ref=sft_adapter",
        f"ref.adapter_path={sft_run / 'model'}",
        f"hydra.run.dir={run_dir}",
    )
    metrics, _ = read_run(run_dir)
    before = metrics["before_training"]
    # Policy == reference at the start: the held-out loss and the first training loss are ln 2.
    assert before["eval_loss"] == LN2_FLOAT32 and before["eval_rewards/margins"] == 0.0
    assert logged(run_dir, "loss")[0] == pytest.approx(math.log(2), abs=1e-6)
    # The policy started as the SFT model: its held-out chosen log-probs are the SFT model's, not the base's.
    cfg, tokenizer, models = load_run(sft_run)
    _, pairs = load_splits(cfg.dataset, "paired")
    sft_logps = pair_metrics(models, tokenizer, pairs, 0.1, max_length=cfg.train.max_length)["chosen_logps"]
    with models.reference_model() as base:
        base_logps = pair_metrics(PolicyAndReference(base, base), tokenizer, pairs, 0.1)["chosen_logps"]
    assert before["eval_logps/chosen"] == pytest.approx(sft_logps, rel=1e-4)
    assert abs(sft_logps - base_logps) > 1.0
    # The reference TRL kept beside the trained adapter is the SFT adapter, unchanged.
    start = load_file(sft_run / "model" / "adapter_model.safetensors")
    reference = load_file(run_dir / "model" / "ref" / "adapter_model.safetensors")
    assert reference.keys() == start.keys() and all(torch.equal(reference[k], start[k]) for k in start)
