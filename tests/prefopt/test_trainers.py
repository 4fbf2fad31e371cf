"""prefopt.trainers: FastDPOTrainer, FastSFTTrainer, FastKTOTrainer and FastRewardTrainer give TRL's loss, metrics
and gradients; length-grouped batches of pairs."""

import functools
import math

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer, KTOTrainer, RewardTrainer, SFTTrainer

from prefopt.adapters import lora_config
from prefopt.data import load_splits
from prefopt.models import load_model, load_tokenizer
from prefopt.run import trl_config
from prefopt.trainers import (
    FastDPOTrainer,
    FastKTOTrainer,
    FastRewardTrainer,
    FastSFTTrainer,
    PairLengthSampler,
    pair_lengths,
)
from recipes import dpo, kto, rm, sft
from tests.conftest import compose_config
from tests.prefopt.trainer_steps import assert_same_step, lora_trainer, one_step

TINY = ["model=tiny-random", "logger=none", "dataset.num_train=16", "dataset.num_eval=8"]


@pytest.mark.parametrize("method", ["dpo", "ipo"])
def test_recipe_trainer_gives_trls_loss_rewards_and_gradients(method):
    cfg = compose_config(f"method={method}", *TINY, "+train.train_sampling_strategy=sequential")
    train, _ = load_splits(cfg.dataset, "paired")
    trl_loss, trl_metrics, trl_grads = one_step(DPOTrainer, cfg, train, dpo.RECIPE)
    loss, metrics, grads = one_step(FastDPOTrainer, cfg, train, dpo.RECIPE)
    assert abs(trl_loss - math.log(2)) > 1e-3  # policy and reference really differ
    assert loss == pytest.approx(trl_loss, abs=1e-5)
    assert metrics.keys() == trl_metrics.keys()
    for key in (
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "entropy",
        "logits/chosen",
        "logits/rejected",
        "mean_token_accuracy",
        "num_tokens",
    ):
        assert metrics[key] == pytest.approx(trl_metrics[key], abs=1e-5), key
    assert grads.keys() == trl_grads.keys()
    for name in grads:
        # fp32 sums in another order: entries near zero differ by ~1e-7 (seen on IPO's larger loss scale).
        torch.testing.assert_close(grads[name], trl_grads[name], rtol=1e-4, atol=5e-7)


def test_sft_trainer_gives_trls_loss_metrics_and_gradients_from_one_packed_row(chunked_head_calls, backbone_row_shapes):
    cfg = compose_config("method=sft", *TINY, "peft.lora_dropout=0")  # dropout would draw differently in each
    train, _ = load_splits(cfg.dataset, "sft")
    trl_loss, trl_metrics, trl_grads = one_step(SFTTrainer, cfg, train, sft.RECIPE)
    assert chunked_head_calls and not backbone_row_shapes  # TRL's own head and layout ran for TRL's trainer
    chunked_head_calls.clear()
    loss, metrics, grads = one_step(FastSFTTrainer, cfg, train, sft.RECIPE)
    assert not chunked_head_calls  # the recipe's trainer scored the completion tokens itself
    assert [shape[0] for shape in backbone_row_shapes] == [1]  # the batch's 8 sequences in one row, prefix once
    assert math.isfinite(loss) and loss == pytest.approx(trl_loss, abs=1e-5)
    assert metrics.keys() == trl_metrics.keys() >= {"entropy", "mean_token_accuracy"}
    for key in metrics:
        assert metrics[key] == pytest.approx(trl_metrics[key], abs=1e-5), key
    assert grads.keys() == trl_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], trl_grads[name], rtol=1e-4, atol=5e-7)


@pytest.fixture
def ragged_pairs() -> Dataset:
    """1024 plain-text pairs with lognormal lengths (the tiny tokenizer: one character is one token)."""
    generator = torch.Generator().manual_seed(0)
    lengths = (torch.tensor([90.0, 60.0, 55.0]) * torch.exp(0.8 * torch.randn(1024, 3, generator=generator))).long() + 1
    return Dataset.from_list(
        [{"prompt": "p" * int(p), "chosen": "c" * int(c), "rejected": "r" * int(r)} for p, c, r in lengths.tolist()]
    )


def recipe_trainer(ragged, strategy):
    """TRL's row layout (shared-prompt rows: tests/prefopt/test_shared_prompt.py)."""
    cfg = compose_config(
        *TINY, "train.max_length=1024", f"+train.train_sampling_strategy={strategy}", "method.share_prompt=false"
    )
    return dpo.build_trainer(
        cfg,
        args=trl_config(cfg),
        model=load_model(cfg.model, "fp32"),
        ref_model=None,
        tokenizer=load_tokenizer(cfg.model),
        train_dataset=ragged,
        eval_dataset=ragged.select(range(20)),
        peft_config=lora_config(cfg.peft),
        callbacks=[],
    )


def non_pad_fraction(trainer) -> float:
    masks = [batch["attention_mask"] for batch in trainer.get_train_dataloader()]
    return sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


def test_group_by_length_pads_less_than_trls_random_batches(ragged_pairs):
    grouped = recipe_trainer(ragged_pairs, "group_by_length")
    sampler = grouped._get_train_sampler()
    assert isinstance(sampler, PairLengthSampler)
    order = list(sampler)
    assert sorted(order) == list(range(len(grouped.train_dataset))) and len(order) > 1000  # every pair once per epoch
    lengths = sampler.lengths
    assert max(lengths[i] for i in order[:8]) == max(lengths)  # the longest batch first
    assert order != list(sampler)  # a new order each epoch
    random_fraction = non_pad_fraction(recipe_trainer(ragged_pairs, "random"))
    grouped_fraction = non_pad_fraction(grouped)
    # TRL pads each pair's shorter answer to the longer one, so no sampler beats every pair's own fraction.
    tokenized = grouped.train_dataset
    per_pair = [
        (2 * len(p) + len(c) + len(r)) / (2 * (len(p) + max(len(c), len(r))))
        for p, c, r in zip(tokenized["prompt_ids"], tokenized["chosen_ids"], tokenized["rejected_ids"])
    ]
    bound = sum(per_pair) / len(per_pair)
    assert grouped_fraction > bound - 0.03 and grouped_fraction > random_fraction + 0.3, (
        random_fraction,
        grouped_fraction,
        bound,
    )
    assert len(list(grouped.get_eval_dataloader())) == 2  # evaluation still loads (sequentially)


def test_pair_lengths_are_prompt_plus_longer_answer_capped_at_max_length():
    rows = Dataset.from_list(
        [
            {"prompt_ids": [1] * 5, "chosen_ids": [2] * 3, "rejected_ids": [3] * 7},
            {"prompt_ids": [1] * 9, "chosen_ids": [2] * 4, "rejected_ids": [3] * 1},
        ]
    )
    assert pair_lengths(rows, None) == [12, 13]
    assert pair_lengths(rows, 12) == [12, 12]
    # One shared-prompt row per pair: the prompt once, both answers, each answer truncated with its prompt.
    assert pair_lengths(rows, None, shared_prompt=True) == [15, 14]
    assert pair_lengths(rows, 12, shared_prompt=True) == [15, 13]


def test_sampler_keeps_the_short_batch_last():
    sampler = PairLengthSampler(lengths=list(range(10)), batch_size=4)
    order = list(sampler)
    assert order[:4] == [9, 8, 7, 6] and sorted(order[4:8]) == [2, 3, 4, 5] and order[8:] == [1, 0]


def test_plain_trl_fails_with_group_by_length(ragged_pairs):
    """Why the recipe has its own sampler: TRL 1.16's DPOTrainer leaves it to transformers, which needs input_ids."""
    args = DPOConfig(output_dir="/tmp/plain-trl", bf16=False, train_sampling_strategy="group_by_length", report_to=[])
    cfg = compose_config(*TINY)
    trainer = DPOTrainer(
        model=load_model(cfg.model, "fp32"),
        args=args,
        train_dataset=ragged_pairs.select(range(16)),
        processing_class=load_tokenizer(cfg.model),
        peft_config=lora_config(cfg.peft),
    )
    with pytest.raises(ValueError, match="input_ids"):
        trainer.get_train_dataloader()


def test_precomputed_reference_log_probs_come_from_the_completion_head(chunked_head_calls):
    """TRL precomputes inside its __init__; the recipe's head must already serve those reference forwards."""
    calls = chunked_head_calls
    cfg = compose_config(*TINY, "method.precompute_ref_log_probs=true")
    train, _ = load_splits(cfg.dataset, "paired")
    logps = {}
    for trainer_class in (FastDPOTrainer, DPOTrainer):
        calls.clear()
        trainer = lora_trainer(trainer_class, cfg, train)
        logps[trainer_class] = (trainer.train_dataset["ref_chosen_logps"], len(calls))
    (trl_logps, trl_calls), (our_logps, our_calls) = logps[DPOTrainer], logps[FastDPOTrainer]
    assert trl_calls > 0 and our_calls == 0
    assert our_logps == pytest.approx(trl_logps, abs=1e-4) and len(our_logps) == 16


@pytest.mark.parametrize(("attention", "batch", "rows"), [("sdpa", 4, 1), ("eager", 2, 1), ("sdpa", 8, 8)])
def test_kto_trainer_gives_trls_loss_metrics_and_gradients_from_packed_rows(
    attention, batch, rows, chunked_head_calls, backbone_row_shapes
):
    cfg = compose_config(
        "method=kto", *TINY, "+train.train_sampling_strategy=sequential", f"train.per_device_train_batch_size={batch}"
    )
    train, _ = load_splits(cfg.dataset, "unpaired")
    trls = one_step(KTOTrainer, cfg, train, kto.RECIPE, attention)
    assert chunked_head_calls and not backbone_row_shapes  # TRL's own head and layout ran for TRL's trainer
    chunked_head_calls.clear()
    ours = one_step(FastKTOTrainer, cfg, train, kto.RECIPE, attention)
    assert not chunked_head_calls  # the recipe's trainer scored the completion tokens itself
    # TRL's four forwards (policy and reference, each on the completion rows and the KL rows) computed as two, each
    # on both: one packed row, or (8 tiny-model rows are too long to pack) one row per prompt.
    assert [shape[0] for shape in backbone_row_shapes] == [rows] * 2
    assert ours[1]["kl"] > 0 and abs(ours[0] - 0.5) > 1e-3  # the KL term and the loss are not trivial
    assert_same_step(ours, trls)


def test_kto_precomputed_reference_log_probs_equal_trls_one_forward_per_batch(backbone_row_shapes):
    """TRL precomputes the reference's log-probs of the completion rows and of the KL rows in two forwards per batch;
    the recipe's trainer computes both in one packed row."""
    cfg = compose_config("method=kto", *TINY, "method.precompute_ref_log_probs=true")
    train, _ = load_splits(cfg.dataset, "unpaired")
    columns = {}
    for trainer_class in (KTOTrainer, FastKTOTrainer):
        backbone_row_shapes.clear()
        trainer = lora_trainer(trainer_class, cfg, train)
        columns[trainer_class] = {key: trainer.train_dataset[key] for key in ("ref_logps", "ref_KL_logps")}
    batches = math.ceil(len(train) / cfg.train.per_device_train_batch_size)  # TRL's precompute batch size
    assert len(backbone_row_shapes) == batches  # one forward per batch (one row per pair, or packed)
    for key, theirs in columns[KTOTrainer].items():
        assert columns[FastKTOTrainer][key] == pytest.approx(theirs, abs=1e-4) and len(theirs) == len(train)


def test_kto_sft_weight_adds_the_desirable_completions_nll_to_trls_loss():
    cfg = compose_config("method=kto", *TINY, "+train.train_sampling_strategy=sequential")
    train, _ = load_splits(cfg.dataset, "unpaired")
    trl_loss, trl_metrics, trl_grads = one_step(KTOTrainer, cfg, train, kto.RECIPE)
    batches = []
    weighted = functools.partial(FastKTOTrainer, sft_weight=0.5)
    loss, metrics, grads = one_step(weighted, cfg, train, kto.RECIPE, batches=batches)
    # TRL's own metrics unchanged; logps/chosen is TRL's sum of each desirable completion's log-probs, per row.
    sft_loss = metrics.pop("sft_loss")
    assert metrics == pytest.approx(trl_metrics, rel=1e-4, abs=1e-7)
    (batch,) = batches
    desirable = batch["label"].bool()
    tokens = batch["completion_mask"][desirable, 1:].sum().item()
    assert 0 < desirable.sum() < len(desirable)
    assert sft_loss == pytest.approx(-trl_metrics["logps/chosen"] * desirable.sum().item() / tokens, rel=1e-4)
    assert loss == pytest.approx(trl_loss + 0.5 * sft_loss, rel=1e-5)
    assert any(not torch.allclose(grads[n], trl_grads[n]) for n in grads)  # the term reaches the weights


def test_kto_sft_weight_must_not_be_negative():
    cfg = compose_config("method=kto", *TINY)
    train, _ = load_splits(cfg.dataset, "unpaired")
    with pytest.raises(ValueError, match="method.sft_weight=-1"):
        one_step(functools.partial(FastKTOTrainer, sft_weight=-1), cfg, train, kto.RECIPE)


@pytest.mark.parametrize(("attention", "batch"), [("sdpa", 8), ("eager", 2)])
def test_reward_trainer_gives_trls_loss_metrics_and_gradients_from_one_row_per_pair(
    attention, batch, backbone_row_shapes
):
    cfg = compose_config(
        "method=rm", *TINY, "+train.train_sampling_strategy=sequential", f"train.per_device_train_batch_size={batch}"
    )
    train, _ = load_splits(cfg.dataset, "paired")
    trls = one_step(RewardTrainer, cfg, train, rm.RECIPE, attention)
    assert not backbone_row_shapes
    ours = one_step(FastRewardTrainer, cfg, train, rm.RECIPE, attention)
    # 8 tiny-model pairs are too long to pack: one row per pair; 2 are packed into one row.
    assert [shape[0] for shape in backbone_row_shapes] == [batch if batch == 8 else 1]
    assert_same_step(ours, trls)


def test_kto_with_a_model_that_cannot_take_the_mask_keeps_trls_layout_and_says_so(caplog, backbone_row_shapes):
    cfg = compose_config("method=kto", *TINY, "train.per_device_train_batch_size=2")
    train, _ = load_splits(cfg.dataset, "unpaired")
    model = load_model(cfg.model, "fp32")
    model.config.sliding_window = 4  # sliding-window attention: a custom mask would ignore the window
    with caplog.at_level("INFO", logger="prefopt.trainers"):
        trainer = lora_trainer(FastKTOTrainer, cfg, train, model)
    assert trainer.share_prompt is False
    assert "share_prompt: off for this model" in caplog.text
    trainer.compute_loss(trainer.model, trainer._prepare_inputs(next(iter(trainer.get_train_dataloader()))))
    assert backbone_row_shapes == []


def test_kto_evaluation_skips_the_logits_nothing_reads():
    """TRL's KTOTrainer rebuilds every position's logits in an extra forward when evaluation asks for them; without
    compute_metrics nothing reads them, so the recipe's trainer returns the loss alone, the same loss."""
    cfg = compose_config("method=kto", *TINY, "train.per_device_train_batch_size=2")
    train, _ = load_splits(cfg.dataset, "unpaired")
    losses = {}
    for trainer_class in (KTOTrainer, FastKTOTrainer):
        trainer = lora_trainer(trainer_class, cfg, train)
        trainer.model.eval()
        batch = next(iter(trainer.get_train_dataloader()))
        loss, logits, labels = trainer.prediction_step(trainer.model, batch, prediction_loss_only=False)
        losses[trainer_class] = loss.item()
        assert (logits is None and labels is None) == (trainer_class is FastKTOTrainer)
    assert losses[FastKTOTrainer] == pytest.approx(losses[KTOTrainer], abs=1e-6)
