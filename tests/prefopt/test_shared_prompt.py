"""prefopt.shared_prompt: one row per pair, or the pairs packed into one row around their common prefix, gives TRL's
hidden states, loss and gradients, and pads less."""

import pytest
import torch
from datasets import Dataset
from trl import DPOTrainer

from prefopt import shared_prompt
from prefopt.adapters import lora_config
from prefopt.data import load_splits
from prefopt.models import load_model, load_tokenizer
from prefopt.run import trl_config
from prefopt.trainers import FastDPOTrainer
from recipes import dpo
from tests.conftest import compose_config

TINY = ["model=tiny-random", "logger=none", "dataset.num_train=16", "dataset.num_eval=8"]

# Two pairs, TRL's layout [chosen rows; rejected rows], right-padded with 0: prompts of 3 and 2 tokens.
IDS = torch.tensor(
    [[5, 6, 7, 8, 9, 0, 0], [20, 21, 10, 0, 0, 0, 0], [5, 6, 7, 11, 12, 13, 14], [20, 21, 15, 16, 0, 0, 0]]
)
COMPLETION = torch.tensor([[0, 0, 0, 1, 1, 0, 0], [0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0, 0]])
ATTENTION = (IDS != 0).long()
# The same two pairs, both prompts starting with [3, 4] (a chat template's system prompt, say).
IDS_COMMON = torch.cat([torch.tensor([[3, 4]] * 4), IDS], dim=1)
COMPLETION_COMMON = torch.cat([torch.zeros(4, 2, dtype=torch.long), COMPLETION], dim=1)
ATTENTION_COMMON = (IDS_COMMON != 0).long()
# On a GPU machine `pytest tests/prefopt/test_shared_prompt.py -k cuda` checks the rows on CUDA's attention kernels
# (sdpa takes its memory-efficient kernel for a custom mask, not the flash one).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def batch(ids=IDS, attention=ATTENTION, completion=COMPLETION) -> dict:
    return {"input_ids": ids, "attention_mask": attention, "completion_mask": completion}


def test_layout_puts_prompt_then_both_answers_in_one_row():
    rows = shared_prompt.share_prompts(IDS, ATTENTION, COMPLETION)
    assert rows.shared_ids[0].tolist() == [5, 6, 7, 8, 9, 11, 12, 13, 14]
    assert rows.shared_ids[1, :5].tolist() == [20, 21, 10, 15, 16]
    # The rejected answer continues from the end of the prompt, not from the chosen answer.
    assert rows.position_ids[0].tolist() == [0, 1, 2, 3, 4, 3, 4, 5, 6]
    assert rows.position_ids[1, :5].tolist() == [0, 1, 2, 2, 3]
    assert rows.positions_saved == pytest.approx(1 - 18 / 28)
    # Back to TRL's layout: every real position finds its own token and position.
    ids_back = rows.to_pair_rows(rows.shared_ids.unsqueeze(-1).float()).squeeze(-1)
    positions_back = rows.to_pair_rows(rows.position_ids.unsqueeze(-1).float()).squeeze(-1)
    real = ATTENTION.bool()
    assert torch.equal(ids_back[real], IDS[real].float())
    assert torch.equal(positions_back[real], (ATTENTION.cumsum(1) - 1)[real].float())
    assert (ids_back[~real] == 0).all()


def test_pairs_with_a_common_prefix_pack_into_one_row_that_computes_it_once():
    rows = shared_prompt.share_prompts(IDS_COMMON, ATTENTION_COMMON, COMPLETION_COMMON)
    packed = rows.packed()
    # [3, 4] once, then pair 0: prompt rest, chosen, rejected; then pair 1; no padding.
    assert packed.shared_ids.tolist() == [[3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 20, 21, 10, 15, 16]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 6, 5, 6, 7, 8, 2, 3, 4, 4, 5]]
    assert packed.groups.tolist() == [[shared_prompt.COMMON] * 2 + [0] * 9 + [1] * 5]
    assert packed.positions_saved == pytest.approx(1 - 16 / IDS_COMMON.numel())
    assert packed.positions_saved > rows.positions_saved
    ids_back = packed.to_pair_rows(packed.shared_ids.unsqueeze(-1).float()).squeeze(-1)
    positions_back = packed.to_pair_rows(packed.position_ids.unsqueeze(-1).float()).squeeze(-1)
    real = ATTENTION_COMMON.bool()
    assert torch.equal(ids_back[real], IDS_COMMON[real].float())
    assert torch.equal(positions_back[real], (ATTENTION_COMMON.cumsum(1) - 1)[real].float())
    mask = packed.attention_mask("sdpa", torch.float32)[0, 0]
    assert mask[11, :2].all() and not mask[11, 2:11].any() and mask[11, 11]  # pair 1 sees the prefix, not pair 0
    assert mask[7, :5].all() and not mask[7, 5:7].any()  # pair 0's rejected answer: prefix and prompt, no chosen
    assert torch.equal(packed.attention_mask("eager", torch.float32) == 0, packed.attention_mask("sdpa", torch.float32))


@pytest.mark.parametrize("case", ["no common prefix", "one pair", "too long"])
def test_packing_keeps_one_row_per_pair_when_it_would_not_pay(case):
    ids, attention, completion, limit = IDS_COMMON, ATTENTION_COMMON, COMPLETION_COMMON, 1024
    if case == "no common prefix":
        ids, attention, completion = IDS, ATTENTION, COMPLETION
    elif case == "one pair":
        ids, attention, completion = (t[[0, 2]] for t in (ids, attention, completion))
    else:
        limit = 15  # the packed row is 16 positions
    rows = shared_prompt.share_prompts(ids, attention, completion)
    assert rows.packed(limit) is rows


def test_rejected_answer_does_not_see_the_chosen_one():
    rows = shared_prompt.share_prompts(IDS, ATTENTION, COMPLETION)
    mask = rows.attention_mask("sdpa", torch.float32)[0, 0]  # pair 0: prompt 0-2, chosen 3-4, rejected 5-8
    assert mask[5, :3].all() and not mask[5, 3:5].any() and mask[5, 5]
    assert mask[4, :5].all() and not mask[4, 5:].any()  # chosen: causal over prompt and itself
    additive = rows.attention_mask("eager", torch.float32)[0, 0]
    assert torch.equal(additive == 0, mask)


@pytest.mark.parametrize("case", ["different prompt", "left padding", "odd rows"])
def test_batches_that_are_not_shared_prompt_pairs_keep_trls_layout(case):
    ids, attention, completion = IDS.clone(), ATTENTION.clone(), COMPLETION.clone()
    if case == "different prompt":
        ids[2, 1] = 99
    elif case == "left padding":
        attention[0] = torch.tensor([0, 0, 1, 1, 1, 1, 1])
    else:
        ids, attention, completion = ids[:3], attention[:3], completion[:3]
    assert shared_prompt.share_prompts(ids, attention, completion) is None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("layout", ["rows", "packed"])
def test_backbone_gives_the_same_hidden_states_at_every_real_position(layout, attention, precision, device):
    cfg = compose_config(*TINY)
    model = load_model(cfg.model, precision, seed=0).to(device)
    model.set_attn_implementation(attention)
    ids, attention_mask, completion = (
        (IDS, ATTENTION, COMPLETION)
        if layout == "rows"
        else (
            IDS_COMMON,
            ATTENTION_COMMON,
            COMPLETION_COMMON,
        )
    )
    ids, attention_mask = ids.to(device), attention_mask.to(device)
    with torch.no_grad():
        plain = model.model(input_ids=ids, attention_mask=attention_mask).last_hidden_state
        assert shared_prompt.add_shared_prompt_backbone(model)
        with shared_prompt.shared_prompt_rows(batch(ids, attention_mask, completion.to(device))) as rows:
            shared = model.model(input_ids=ids, attention_mask=attention_mask).last_hidden_state
        outside = model.model(input_ids=ids, attention_mask=attention_mask).last_hidden_state
    assert rows is not None and (rows.packed().shared_ids.shape[0] == 1) == (layout == "packed")
    real = attention_mask.bool()
    tolerance = 1e-5 if precision == "fp32" else 2e-2  # bf16: the rows differ in shape, so in rounding
    torch.testing.assert_close(shared[real], plain[real], rtol=tolerance, atol=tolerance)
    assert torch.equal(outside, plain)  # outside the context the backbone is untouched


def test_sft_sequences_pack_into_one_row_with_the_same_hidden_states():
    cfg = compose_config(*TINY)
    model = load_model(cfg.model, "fp32", seed=0)
    ids = torch.tensor([[3, 4, 5, 6, 7, 0], [3, 4, 8, 9, 10, 11], [3, 4, 12, 0, 0, 0]])
    attention_mask = (ids != 0).long()
    rows = shared_prompt.pack_sequences(ids, attention_mask)
    assert rows.shared_ids.tolist() == [[3, 4, 5, 6, 7, 8, 9, 10, 11, 12]]
    assert rows.position_ids.tolist() == [[0, 1, 2, 3, 4, 2, 3, 4, 5, 2]]
    assert shared_prompt.pack_sequences(ids[:, 2:], attention_mask[:, 2:]) is None  # no common first token
    with torch.no_grad():
        plain = model.model(input_ids=ids, attention_mask=attention_mask).last_hidden_state
        assert shared_prompt.add_shared_prompt_backbone(model)
        with shared_prompt.shared_prompt_rows({"input_ids": ids, "attention_mask": attention_mask}, sequences=True):
            packed = model.model(input_ids=ids, attention_mask=attention_mask).last_hidden_state
    real = attention_mask.bool()
    torch.testing.assert_close(packed[real], plain[real], rtol=1e-5, atol=1e-5)


def test_sliding_window_models_keep_trls_layout():
    cfg = compose_config(*TINY)
    model = load_model(cfg.model, "fp32", seed=0)
    model.config.sliding_window = 4
    assert not shared_prompt.add_shared_prompt_backbone(model)


@pytest.mark.parametrize("pairs_per_batch", [8, 2])  # 8 tiny-model pairs are too long to pack, 2 are packed
def test_recipe_trainer_computes_each_prompt_once_with_trls_loss_and_gradients(backbone_row_shapes, pairs_per_batch):
    shared_shapes = backbone_row_shapes
    cfg = compose_config(
        *TINY, "+train.train_sampling_strategy=sequential", f"train.per_device_train_batch_size={pairs_per_batch}"
    )
    train, _ = load_splits(cfg.dataset, "paired")
    results = {}
    for trainer_class in (DPOTrainer, FastDPOTrainer):
        torch.manual_seed(0)
        trainer = trainer_class(
            model=load_model(cfg.model, "fp32", seed=0),
            args=trl_config(cfg),
            train_dataset=train,
            processing_class=load_tokenizer(cfg.model),
            peft_config=lora_config(cfg.peft),
        )
        with torch.no_grad():  # move LoRA's B off zero so that policy and reference differ
            generator = torch.Generator().manual_seed(1)
            for name, param in trainer.model.named_parameters():
                if "lora_B" in name:
                    param.add_(0.1 * torch.randn(param.shape, generator=generator))
        inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
        loss = trainer.compute_loss(trainer.model, inputs)
        loss.backward()
        results[trainer_class] = (
            loss.item(),
            {n: p.grad for n, p in trainer.model.named_parameters() if p.grad is not None},
        )
    pairs, length = inputs["input_ids"].shape[0] // 2, inputs["input_ids"].shape[1]
    assert len(shared_shapes) == 2  # the policy and the reference forward, each on one row per pair, or one row
    if pairs_per_batch == 8:
        assert all(shape[0] == pairs and shape[1] < 2 * length for shape in shared_shapes)
    else:
        assert all(shape[0] == 1 and shape[1] < pairs * 2 * length for shape in shared_shapes)
    (trl_loss, trl_grads), (loss, grads) = results[DPOTrainer], results[FastDPOTrainer]
    assert loss == pytest.approx(trl_loss, abs=1e-5)
    assert grads.keys() == trl_grads.keys() and len(grads) > 4
    for name in grads:
        torch.testing.assert_close(grads[name], trl_grads[name], rtol=1e-4, atol=1e-7)


def test_share_prompt_false_keeps_trls_layout(monkeypatch):
    calls = []
    monkeypatch.setattr(shared_prompt, "share_prompts", lambda *args: calls.append(1))
    cfg = compose_config(*TINY, "method.share_prompt=false")
    train, _ = load_splits(cfg.dataset, "paired")
    trainer = dpo.build_trainer(
        cfg,
        args=trl_config(cfg),
        model=load_model(cfg.model, "fp32"),
        ref_model=None,
        tokenizer=load_tokenizer(cfg.model),
        train_dataset=train,
        eval_dataset=None,
        peft_config=lora_config(cfg.peft),
        callbacks=[],
    )
    assert trainer.share_prompt is False
    trainer.compute_loss(trainer.model, trainer._prepare_inputs(next(iter(trainer.get_train_dataloader()))))
    assert calls == []


def test_shared_rows_of_length_grouped_ragged_pairs_are_over_90_percent_tokens():
    """hh-rlhf-like lognormal lengths (the tiny tokenizer: a character is a token): TRL's layout caps the non-pad
    share below 90%; shared rows grouped by their own length go above it."""
    generator = torch.Generator().manual_seed(0)
    lengths = (torch.tensor([90.0, 60.0, 55.0]) * torch.exp(0.8 * torch.randn(512, 3, generator=generator))).long() + 1
    ragged = Dataset.from_list(
        [{"prompt": "p" * p, "chosen": "c" * c, "rejected": "r" * r} for p, c, r in lengths.tolist()]
    )
    cfg = compose_config(*TINY, "train.max_length=1024", "+train.train_sampling_strategy=group_by_length")
    trainer = dpo.build_trainer(
        cfg,
        args=trl_config(cfg),
        model=load_model(cfg.model, "fp32"),
        ref_model=None,
        tokenizer=load_tokenizer(cfg.model),
        train_dataset=ragged,
        eval_dataset=None,
        peft_config=lora_config(cfg.peft),
        callbacks=[],
    )
    trl_real = trl_positions = shared_real = shared_positions = 0
    for inputs in trainer.get_train_dataloader():
        rows = shared_prompt.share_prompts(inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"])
        trl_real += int(inputs["attention_mask"].sum())
        trl_positions += inputs["attention_mask"].numel()
        shared_real += int((rows.segments != shared_prompt.PAD).sum())
        shared_positions += rows.segments.numel()
    assert trl_real / trl_positions < 0.9 < shared_real / shared_positions
    assert shared_positions < 0.7 * trl_positions


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gradient", [False, True])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("layout", ["rows", "packed"])
def test_padding_queries_give_trls_hidden_states_at_every_position_padding_included(
    layout, attention, gradient, device, monkeypatch
):
    """ORPO's and CPO's logits/* average every position of TRL's rows: their padding is computed as queries that
    see what TRL's padding sees (the row's real tokens) and that nothing sees. With gradient, a packed row's queries
    go through the model after the rest, from its KV cache."""
    cfg = compose_config(*TINY)
    model = load_model(cfg.model, "fp32", seed=0).to(device)
    model.set_attn_implementation(attention)
    ids, attention_mask, completion = (
        (IDS, ATTENTION, COMPLETION) if layout == "rows" else (IDS_COMMON, ATTENTION_COMMON, COMPLETION_COMMON)
    )
    rows = shared_prompt.share_prompts(ids, attention_mask, completion, padding_queries=True)
    # Pair 0: prompt 5 6 7, chosen 8 9, rejected 11-14, then the chosen row's 2 padding positions (columns 5, 6).
    if layout == "rows":
        assert rows.shared_ids[0, :11].tolist() == [5, 6, 7, 8, 9, 11, 12, 13, 14, 0, 0]
        assert rows.position_ids[0, :11].tolist() == [0, 1, 2, 3, 4, 3, 4, 5, 6, 5, 6]
        mask = rows.attention_mask("sdpa", torch.float32)[0, 0]
        assert mask[9, :5].all() and not mask[9, 5:].any()  # a padding query: its row's tokens, not itself
        assert not mask[:, 9:11].any()  # nothing sees a padding query (11 is filler, which sees itself)
    else:
        assert rows.packed().trailing_queries == int((ATTENTION_COMMON == 0).sum())  # all of them, last
    query_passes, forward_queries = [], shared_prompt._forward_queries_without_gradient
    monkeypatch.setattr(
        shared_prompt, "_forward_queries_without_gradient", lambda *a: query_passes.append(1) or forward_queries(*a)
    )
    ids, attention_mask, completion = ids.to(device), attention_mask.to(device), completion.to(device)
    with torch.no_grad():
        plain = model.model(input_ids=ids, attention_mask=attention_mask).last_hidden_state
    assert shared_prompt.add_shared_prompt_backbone(model)
    with torch.set_grad_enabled(gradient):
        with shared_prompt.shared_prompt_rows(batch(ids, attention_mask, completion), padding_queries=True) as used:
            shared = model.model(input_ids=ids, attention_mask=attention_mask).last_hidden_state
    assert (used.shared_ids.shape[0] == 1) == (layout == "packed")
    assert len(query_passes) == (layout == "packed" and gradient)
    assert not attention_mask.bool().all()  # the rows do have padding
    torch.testing.assert_close(shared.detach(), plain, rtol=1e-5, atol=1e-5)  # every position, padding included


def test_reward_model_pairs_share_the_tokens_their_rows_start_with():
    # [chosen; rejected] rows with no prompt/answer split: pair 0 agrees on 3 tokens, pair 1 on 2 (then answers).
    ids = torch.tensor([[5, 6, 7, 8, 0], [20, 21, 10, 0, 0], [5, 6, 7, 11, 12], [20, 21, 15, 16, 0]])
    attention_mask = (ids != 0).long()
    answers = shared_prompt.pair_answers(ids, attention_mask)
    assert answers.tolist() == [[0, 0, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 1], [0, 0, 1, 1, 0]]
    rows = shared_prompt.share_prompts(ids, attention_mask, answers)
    assert rows.shared_ids[0].tolist() == [5, 6, 7, 8, 11, 12]


def test_a_sequence_classifier_scores_each_pair_from_one_row():
    """transformers' sequence classifiers pass input_ids to the backbone by position; each answer's score reads the
    hidden state of its row's last token, which the shared row computes."""
    cfg = compose_config(*TINY)
    model = load_model(cfg.model, "fp32", seed=0, model_class="sequence_classification")
    ids = torch.tensor([[5, 6, 7, 8, 9, 2], [5, 6, 7, 11, 12, 13]])  # 2 is the pad token: row 0 is padded
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=attention_mask).logits
        assert shared_prompt.add_shared_prompt_backbone(model)
        pairs = {"input_ids": ids, "attention_mask": attention_mask}
        pairs["completion_mask"] = shared_prompt.pair_answers(ids, attention_mask)
        with shared_prompt.shared_prompt_rows(pairs) as rows:
            shared = model(input_ids=ids, attention_mask=attention_mask).logits
    assert rows.shared_ids.tolist() == [[5, 6, 7, 8, 9, 11, 12, 13]]
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-5)


def test_several_batches_each_computed_in_its_own_layout(backbone_row_shapes):
    """Batches that do not start with the same prompts row by row (KTO's completion and KL rows then) go through the
    backbone in separate calls, each packed."""
    cfg = compose_config(*TINY)
    model = load_model(cfg.model, "fp32", seed=0)
    first = torch.tensor([[3, 4, 5, 6, 7, 0], [3, 4, 8, 9, 10, 11], [3, 4, 12, 0, 0, 0]])
    second = torch.tensor([[3, 4, 5, 9, 0], [3, 4, 8, 10, 11]])
    assert shared_prompt.add_shared_prompt_backbone(model)
    with torch.no_grad():
        plain = [
            model.model(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state for ids in (first, second)
        ]
        layouts = [shared_prompt.pack_sequences(ids, (ids != 0).long()) for ids in (first, second)]
        with shared_prompt.rows_computed_as(*layouts):
            packed = [
                model.model(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
                for ids in (first, second)
            ]
    assert backbone_row_shapes == [(1, 10, 64), (1, 7, 64)]
    for ids, ours, theirs in zip((first, second), packed, plain):
        real = ids != 0
        torch.testing.assert_close(ours[real], theirs[real], rtol=1e-5, atol=1e-5)


# KTO's two batches: row i of both starts with prompt i ([3, 4, 5] and [3, 4, 8, 9]), then a different completion.
KTO_COMPLETIONS = torch.tensor([[3, 4, 5, 6, 7, 0], [3, 4, 8, 9, 10, 11]])
KTO_KL = torch.tensor([[3, 4, 5, 12, 0, 0, 0], [3, 4, 8, 9, 13, 14, 15]])
KTO_PROMPT_LENGTHS = torch.tensor([[3], [4]])


def kto_batch(ids: torch.Tensor) -> dict:
    completion = (torch.arange(ids.shape[1]) >= KTO_PROMPT_LENGTHS) & (ids != 0)
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "completion_mask": completion.long()}


def test_joint_rows_compute_both_batches_in_one_row_and_serve_the_next_call(backbone_row_shapes):
    cfg = compose_config(*TINY)
    model = load_model(cfg.model, "fp32", seed=0).eval()
    assert shared_prompt.add_shared_prompt_backbone(model)
    completions, kl_rows = kto_batch(KTO_COMPLETIONS), kto_batch(KTO_KL)
    joint = shared_prompt.joint_rows(completions, kl_rows, gradient_first=False)
    # The common prefix once, each prompt once with its completion, the second batch's completions last.
    assert joint.layout.shared_ids.tolist() == [[3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]]
    assert joint.layout.position_ids.tolist() == [[0, 1, 2, 3, 4, 2, 3, 4, 5, 3, 4, 5, 6]]

    def hidden(batch):
        return model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state

    with torch.no_grad():
        plain = [hidden(batch) for batch in (completions, kl_rows)]
        with shared_prompt.rows_computed_as(joint):
            ours_kl, ours = hidden(kl_rows), hidden(completions)  # TRL's order: the KL rows first
        assert len(backbone_row_shapes) == 1
        for batch, mine, theirs in zip((completions, kl_rows), (ours, ours_kl), plain):
            real = batch["attention_mask"].bool()
            torch.testing.assert_close(mine[real], theirs[real], rtol=1e-5, atol=1e-5)
        # Kept hidden states go to the very next call only: a call on anything else in between drops them.
        with shared_prompt.rows_computed_as(shared_prompt.joint_rows(completions, kl_rows, gradient_first=False)):
            hidden(kl_rows), hidden(kto_batch(KTO_COMPLETIONS[:, :4])), hidden(completions)
        assert len(backbone_row_shapes) == 3


def test_joint_rows_build_the_first_batchs_graph_even_when_the_second_is_asked_first_without_gradient(
    backbone_row_shapes,
):
    """TRL's KTO asks for the policy's KL rows under no_grad, then for its completion rows with gradient: the one
    computation builds the completion rows' graph, and their gradients are the plain forward's."""
    cfg = compose_config(*TINY)
    model = load_model(cfg.model, "fp32", seed=0).eval()
    completions, kl_rows = kto_batch(KTO_COMPLETIONS), kto_batch(KTO_KL)
    real = completions["attention_mask"].bool()

    def completion_gradients(layout):
        model.zero_grad()
        with shared_prompt.rows_computed_as(layout):
            with torch.no_grad():
                kl = model.model(input_ids=KTO_KL, attention_mask=kl_rows["attention_mask"]).last_hidden_state
            out = model.model(input_ids=KTO_COMPLETIONS, attention_mask=completions["attention_mask"]).last_hidden_state
        out[real].pow(2).mean().backward()
        return kl, {name: param.grad.clone() for name, param in model.named_parameters() if param.grad is not None}

    plain_kl, plain = completion_gradients(None)
    assert shared_prompt.add_shared_prompt_backbone(model)
    ours_kl, ours = completion_gradients(shared_prompt.joint_rows(completions, kl_rows, gradient_first=True))
    assert len(backbone_row_shapes) == 1 and not ours_kl.requires_grad
    kl_real = kl_rows["attention_mask"].bool()
    torch.testing.assert_close(ours_kl[kl_real], plain_kl[kl_real], rtol=1e-5, atol=1e-5)
    assert ours.keys() == plain.keys() and len(ours) > 4
    for name, grad in plain.items():
        torch.testing.assert_close(ours[name], grad, rtol=1e-4, atol=5e-7)


def test_joint_rows_need_the_same_prompts_row_by_row():
    other_prompt = KTO_KL.clone()
    other_prompt[1, 2] = 7
    assert shared_prompt.joint_rows(kto_batch(KTO_COMPLETIONS), kto_batch(other_prompt), gradient_first=False) is None
