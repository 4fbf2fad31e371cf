"""A faster log-prob head for devices without Triton (every CPU): only completion tokens are projected.

TRL's preference trainers patch the model so that `model(..., labels=labels, fused_lm_head=True)` returns
per-token log-probs without building the [tokens, vocab] logits. Without Triton that head runs torch fallbacks
that score *every* position (prompt and padding too, so the tile shapes never change) and make a dozen passes over
each [tokens x 32k-vocab] tile, more for the entropy, mean-logit and top-1 metrics DPO logs every step. On the
built-in data with SmolLM2 (49k vocabulary) 135 of a batch's 1,056 positions are completion tokens, and the
head took 40% of a LoRA step's loss and backward (docs/performance.md).

`add_completion_lm_head` re-patches such a model: it projects only the positions whose label is not -100, takes
one logsumexp over their full logits and lets autograd do the backward. Its outputs are TRL's
`FusedCausalLMOutput` with the same fields and meaning, so the trainer's loss and every logged metric are
unchanged (tests/prefopt/test_lm_head.py compares them with TRL's head).

TRL's experimental ORPO and CPO trainers have no such head: they build the full logits of every position on every
device. `add_scoring_head` gives them the same economy (on any device): the log-probs of the labelled tokens, and
each position's mean logit from `h . mean(W)` for their logits/* metrics.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from transformers.modeling_outputs import ModelOutput
from transformers.utils import is_triton_available
from trl.trainer.utils import FusedCausalLMOutput

from prefopt.compat.models import replace_forward

# Config fields with which a model's forward rescales or soft-caps its logits (Gemma, Cohere, Granite, MiniCPM,
# Falcon-H1, ...): the plain `lm_head` projection used here would miss that, so such models keep TRL's head.
LOGIT_TRANSFORM_FIELDS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)
# Above this many completion logits (2^27 fp32 = 512 MiB, kept for the backward) a call goes through TRL's
# chunked head instead, whose memory does not grow with the vocabulary.
MAX_LOGITS = 2**27


def triton_head(device: torch.device) -> bool:
    """Whether TRL's fused head runs its Triton kernels here (it then scores completion tokens only already)."""
    return is_triton_available() and device.type in ("cuda", "xpu")


def add_completion_lm_head(model, outputs: tuple[str, ...] = ("log_probs",)) -> bool:
    """Replace the fused-head path of a model TRL has patched with `add_fused_lm_head`; False if left as it is.

    `model` is the causal LM itself (the base model under a peft wrapper), `outputs` the per-token fields the
    trainer asked TRL's head for. Calls without `fused_lm_head=True` (generation, `return_outputs`), with
    pre-shifted `shift_labels` or with too many completion tokens still go to TRL's forward.
    """
    text_config = model.config.get_text_config()
    if any(getattr(text_config, name, None) is not None for name in LOGIT_TRANSFORM_FIELDS):
        return False
    if getattr(text_config, "output_router_logits", False):  # MoE: TRL adds the load-balancing loss
        return False
    trl_forward = model.forward

    @functools.wraps(type(model).forward)  # generate() checks its kwargs against this signature
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        mask = labels[:, 1:] != -100 if fused_lm_head and shift_labels is None else None
        if mask is None or int(mask.sum()) * text_config.vocab_size > MAX_LOGITS:
            return trl_forward(
                *args,
                fused_lm_head=fused_lm_head,
                labels=labels,
                shift_labels=shift_labels,
                num_items_in_batch=num_items_in_batch,
                **kwargs,
            )
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        targets = labels[:, 1:][mask]
        logits = self.get_output_embeddings()(hidden[mask]).float()  # [completion tokens, vocab]
        log_z = torch.logsumexp(logits, dim=-1)
        log_probs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z
        with torch.no_grad():  # DPO logs these; none of them carries a gradient in TRL's trainers
            metrics = _token_metrics(logits.detach(), log_z.detach(), targets, outputs)
        per_token = {"log_probs": log_probs, **metrics}
        # masked_scatter keeps the log-probs connected to the graph even when no label is valid
        per_token = {k: v.new_zeros(mask.shape).masked_scatter(mask, v) for k, v in per_token.items()}
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        loss = -per_token["log_probs"].sum() / count
        return FusedCausalLMOutput(loss=loss, label_mask=mask, **per_token)

    replace_forward(model, forward.__get__(model))
    return True


def _token_metrics(logits: torch.Tensor, log_z: torch.Tensor, targets: torch.Tensor, outputs) -> dict:
    """The optional per-token fields of TRL's head, from full logits: the same definitions, one pass each."""
    metrics = {}
    if "entropy" in outputs or "log_sum_sq_probs" in outputs:
        log_p = logits - log_z.unsqueeze(-1)
        if "entropy" in outputs:
            metrics["entropy"] = -(log_p.exp() * log_p).sum(-1)
        if "log_sum_sq_probs" in outputs:
            metrics["log_sum_sq_probs"] = torch.logsumexp(2 * log_p, dim=-1)
    if "mean_logits" in outputs:
        metrics["mean_logits"] = logits.mean(-1)
    if "is_top1" in outputs:
        metrics["is_top1"] = logits.argmax(-1) == targets  # argmax takes the first maximum, as TRL's kernel does
    return metrics


@dataclass
class ScoredOutput(ModelOutput):
    """What a model patched with `add_scoring_head` returns when called with `scored_labels`."""

    log_probs: torch.Tensor | None = None  # [rows, L-1]: each next-token label's log-prob, 0 where it is -100
    label_mask: torch.Tensor | None = None  # [rows, L-1]: where the label is not -100
    mean_logits: torch.Tensor | None = None  # [rows, L]: every position's logits averaged over the vocabulary


def add_scoring_head(model) -> bool:
    """Patch causal LM `model` (the base model under a peft wrapper) for trainers that take the full logits of every
    position to use a few of them (TRL 1.16's experimental ORPOTrainer and CPOTrainer): `model(...,
    scored_labels=labels)` projects only the positions whose next-token label is not -100 and returns their
    log-probs, plus the mean logit of every position (`h . mean(W)`, what their logits/* metrics average), without
    building the [rows, L, vocab] logits. False (left as it is) for models that transform their logits. Calls
    without `scored_labels` (generation, evaluation) go to the model's own forward.
    """
    text_config = model.config.get_text_config()
    if any(getattr(text_config, name, None) is not None for name in LOGIT_TRANSFORM_FIELDS):
        return False
    if getattr(text_config, "output_router_logits", False):  # MoE: the trainer adds the load-balancing loss
        return False
    own_forward = model.forward

    @functools.wraps(type(model).forward)  # generate() checks its kwargs against this signature
    def forward(self, *args, scored_labels=None, labels=None, **kwargs):
        if scored_labels is None:
            return own_forward(*args, labels=labels, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        head = self.get_output_embeddings()
        mask = scored_labels[:, 1:] != -100
        logits = head(hidden[:, :-1][mask]).float()  # [scored positions, vocab]
        targets = scored_labels[:, 1:][mask]
        log_probs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        with torch.no_grad():
            mean_row = head.weight.float().mean(0)
            mean_logits = hidden.float() @ mean_row
            if getattr(head, "bias", None) is not None:
                mean_logits += head.bias.float().mean()
        # masked_scatter keeps the log-probs connected to the graph even when no label is valid
        return ScoredOutput(
            log_probs=log_probs.new_zeros(mask.shape).masked_scatter(mask, log_probs),
            label_mask=mask,
            mean_logits=mean_logits,
        )

    model.forward = forward.__get__(model)
    return True
