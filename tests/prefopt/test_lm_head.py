"""prefopt.lm_head against TRL's own fused head: the same per-token outputs and gradients on the tiny model."""

import pytest
import torch
from trl.trainer.utils import add_fused_lm_head

from prefopt import lm_head
from prefopt.models import load_model
from tests.conftest import compose_config

ALL_OUTPUTS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


def tiny_model():
    cfg = compose_config("model=tiny-random", "logger=none")
    model = load_model(cfg.model, "fp32", seed=0)
    add_fused_lm_head(model, outputs=ALL_OUTPUTS)
    return model


def batch(model):
    """Completion labels on the last 6 positions, padding (-100) after them on one row; half the labels are the
    model's own top-1 token, so is_top1 is sometimes true."""
    ids = torch.randint(3, 100, (3, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        top1 = model(input_ids=ids).logits.argmax(-1)
    ids[:, 15::2] = top1[:, 14:-1:2]  # the token predicted from the previous position
    labels = ids.clone()
    labels[:, :14] = -100
    labels[1, 18:] = -100
    return ids, labels


def outputs_and_grads(model, ids, labels):
    model.zero_grad()
    out = model(input_ids=ids, labels=labels, fused_lm_head=True)
    (out.log_probs.sum() + out.loss).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out, grads


def test_completion_head_matches_trl_outputs_and_gradients():
    model = tiny_model()
    ids, labels = batch(model)
    trl_out, trl_grads = outputs_and_grads(model, ids, labels)
    assert lm_head.add_completion_lm_head(model, ALL_OUTPUTS)
    ours, our_grads = outputs_and_grads(model, ids, labels)
    for field in ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "loss"):
        torch.testing.assert_close(getattr(ours, field), getattr(trl_out, field), rtol=1e-5, atol=1e-5)
    assert torch.equal(ours.is_top1, trl_out.is_top1)
    assert 0 < int(ours.is_top1.sum()) < int(ours.label_mask.sum())  # both kinds of position are covered
    assert torch.equal(ours.label_mask, trl_out.label_mask)
    assert (ours.log_probs[~ours.label_mask] == 0).all()
    assert our_grads.keys() == trl_grads.keys() and len(our_grads) > 10
    for name in trl_grads:
        torch.testing.assert_close(our_grads[name], trl_grads[name], rtol=1e-4, atol=1e-6)


def test_only_the_requested_fields_are_computed():
    model = tiny_model()
    ids, labels = batch(model)
    lm_head.add_completion_lm_head(model, ("log_probs",))
    out = model(input_ids=ids, labels=labels, fused_lm_head=True)
    assert out.log_probs is not None
    assert out.entropy is None and out.mean_logits is None and out.is_top1 is None and out.log_sum_sq_probs is None


def test_calls_without_the_fused_head_and_big_batches_go_to_trl(monkeypatch, chunked_head_calls):
    model = tiny_model()
    ids, labels = batch(model)
    lm_head.add_completion_lm_head(model, ALL_OUTPUTS)
    calls = chunked_head_calls
    assert model(input_ids=ids).logits.shape == (3, 20, 128)  # the plain forward, for generation
    model(input_ids=ids, labels=labels, fused_lm_head=True)
    assert calls == []  # the completion head served it
    monkeypatch.setattr(lm_head, "MAX_LOGITS", 10)  # 16 completion tokens x 128 logits is more
    big = model(input_ids=ids, labels=labels, fused_lm_head=True)
    assert calls == [1] and big.log_probs.shape == (3, 19)  # TRL's chunked head served it


@pytest.mark.parametrize("field", ["final_logit_softcapping", "logit_scale", "logits_scaling"])
def test_models_that_transform_their_logits_keep_trls_head(field):
    model = tiny_model()
    setattr(model.config, field, 2.0)
    trl_forward = model.forward
    assert not lm_head.add_completion_lm_head(model, ALL_OUTPUTS)
    assert model.forward == trl_forward


def test_triton_head_only_on_accelerators():
    assert not lm_head.triton_head(torch.device("cpu"))


def test_scoring_head_gives_the_full_logits_log_probs_and_every_positions_mean_logit():
    cfg = compose_config("model=tiny-random", "logger=none")
    model = load_model(cfg.model, "fp32", seed=0)
    ids, labels = batch(model)
    full = model(input_ids=ids).logits  # [3, 20, 128]
    expected_log_probs = full[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    assert lm_head.add_scoring_head(model)
    out = model(input_ids=ids, scored_labels=labels)
    mask = labels[:, 1:] != -100
    assert torch.equal(out.label_mask, mask)
    torch.testing.assert_close(out.log_probs[mask], expected_log_probs[mask], rtol=1e-5, atol=1e-5)
    assert (out.log_probs[~mask] == 0).all()
    torch.testing.assert_close(out.mean_logits, full.mean(-1), rtol=1e-5, atol=1e-6)  # every position, no label too
    out.log_probs.sum().backward()  # the log-probs carry the gradient
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert torch.equal(model(input_ids=ids).logits, full)  # without scored_labels: the model's own forward


def test_models_that_transform_their_logits_keep_their_own_forward_for_scoring():
    cfg = compose_config("model=tiny-random", "logger=none")
    model = load_model(cfg.model, "fp32", seed=0)
    model.config.final_logit_softcapping = 30.0
    assert not lm_head.add_scoring_head(model)
