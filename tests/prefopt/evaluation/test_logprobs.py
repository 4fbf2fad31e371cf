"""prefopt/evaluation/logprobs.py on the tiny random model: pair metrics equal TRL's (with TRL's token split), and
neither padding nor packing changes a sequence's log-probability."""

import pytest
import torch

from prefopt.data import builtin, load_splits
from prefopt.evaluation.encoding import encode_pair
from prefopt.evaluation.logprobs import pair_metrics, sequence_logps
from prefopt.evaluation.models import PolicyAndReference
from prefopt.models import load_model
from prefopt.run import trl_config
from recipes import dpo
from tests.conftest import compose_config
from tests.prefopt.evaluation.conftest import SMALL, perturb


def test_pair_metrics_equal_what_trls_dpo_trainer_logs(tokenizer):
    cfg = compose_config(
        "method=dpo", "method.loss_type=[sigmoid]", "peft=none", "train.per_device_eval_batch_size=16", *SMALL
    )
    reference = load_model(cfg.model, "fp32", seed=cfg.train.seed)
    policy = perturb(load_model(cfg.model, "fp32", seed=cfg.train.seed), 0.05)
    train, held_out = load_splits(cfg.dataset, "paired")
    trainer = dpo.build_trainer(
        cfg,
        args=trl_config(cfg),
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
    # The standard errors are over pairs: each pair counted twice leaves the mean and the spread of the pairs as
    # they were, so the standard error shrinks by sqrt((n - 1) / (2n - 1)) exactly.
    twice = pair_metrics(
        PolicyAndReference(policy, reference),
        tokenizer,
        [*held_out, *held_out],
        cfg.method.beta,
        max_length=cfg.train.max_length,
    )
    assert ours["reward_margin_se"] > 0 and ours["loss_se"] > 0
    for name in ("reward_margin", "loss"):
        assert twice[name] == pytest.approx(ours[name], rel=1e-6)
        assert twice[f"{name}_se"] == pytest.approx(ours[f"{name}_se"] * (15 / 31) ** 0.5, rel=1e-5), name


def test_sequence_logps_do_not_depend_on_what_else_is_in_the_batch(tokenizer, backbone_row_shapes):
    model = perturb(load_model(compose_config(*SMALL).model, "fp32", seed=1), 0.05)
    sequences = pair_sequences(tokenizer, 4)
    together = sequence_logps(model, sequences, batch_size=8, pad_id=tokenizer.pad_token_id)
    prefix = common_prefix(sequences)
    (packed,) = backbone_row_shapes  # the batch went through the backbone as one row, the prefix once, no padding
    assert packed[:2] == (1, sum(len(p) + len(c) for p, c in sequences) - 7 * prefix)
    # Chosen answers first, then the rejected ones: a batch of pairs, each prompt computed once for both answers.
    pairs_order = sequences[0::2] + sequences[1::2]
    as_pairs = sequence_logps(model, pairs_order, batch_size=8, pad_id=tokenizer.pad_token_id)
    assert backbone_row_shapes[1][1] == packed[1] - sum(len(p) - prefix for p, _ in sequences[1::2])
    alone = torch.cat([sequence_logps(model, [s], batch_size=1, pad_id=tokenizer.pad_token_id) for s in sequences])
    assert len(backbone_row_shapes) == 2  # one sequence is not packed
    assert len({len(p) + len(c) for p, c in sequences}) > 1  # the batch really is padded
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(as_pairs, torch.cat([alone[0::2], alone[1::2]]), rtol=1e-5, atol=1e-4)
    # and the sum is over completion tokens only: by hand for the first sequence
    prompt_ids, completion_ids = sequences[0]
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1], -1)
    by_hand = sum(logp[len(prompt_ids) - 1 + i, token].item() for i, token in enumerate(completion_ids))
    assert together[0].item() == pytest.approx(by_hand, abs=1e-4)


def pair_sequences(tokenizer, pairs: int) -> list[tuple[list[int], list[int]]]:
    """Built-in test pairs as (prompt, answer) sequences: chosen, rejected, chosen, ..."""
    sequences = []
    for row in builtin.build_pairs(pairs, pairs)["test"]:
        prompt_ids, chosen_ids, rejected_ids = encode_pair(tokenizer, row["prompt"], row["chosen"], row["rejected"])
        sequences += [(prompt_ids, chosen_ids), (prompt_ids, rejected_ids)]
    return sequences


def common_prefix(sequences) -> int:
    """How many tokens every sequence's prompt starts with."""
    prompts = [p for p, _ in sequences]
    length = 0
    while length < min(map(len, prompts)) and len({p[length] for p in prompts}) == 1:
        length += 1
    return length


def test_sequence_logps_of_a_lora_model_are_packed_as_its_base_models(tokenizer, backbone_row_shapes):
    from peft import LoraConfig, get_peft_model

    model = perturb(load_model(compose_config(*SMALL).model, "fp32", seed=1), 0.05)
    sequences = pair_sequences(tokenizer, 2)
    lora = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))  # B = 0: the base model's function
    wrapped = sequence_logps(lora, sequences, batch_size=4, pad_id=tokenizer.pad_token_id)
    assert len(backbone_row_shapes) == 1 and backbone_row_shapes[0][0] == 1  # one packed row
    with lora.disable_adapter():
        base = sequence_logps(lora.get_base_model(), sequences, batch_size=4, pad_id=tokenizer.pad_token_id)
    torch.testing.assert_close(wrapped, base, rtol=1e-5, atol=1e-4)
