"""One row per DPO pair: the prompt goes through the model once, for the chosen and the rejected answer together.

TRL's DPOTrainer stacks a batch as [chosen rows; rejected rows], each row `prompt + answer`, right-padded to the
longest: every prompt is computed twice and each pair's shorter answer is padded to the longer one. Attention is
causal, so a prompt's hidden states are the same in both rows. While a trainer holds `shared_prompt_rows(batch)`,
the backbone of a model patched with `add_shared_prompt_backbone` computes such a batch as one row per pair,
`prompt + chosen + rejected`: the rejected answer's positions restart where the prompt ends and its tokens do not
see the chosen ones. The hidden states are then put back in TRL's layout, so the LM head, the loss and every
metric run unchanged on the same numbers (to float rounding; tests/prefopt/test_shared_prompt.py).

When every pair of a batch starts with the same tokens (a chat template's system prompt: 24 of SmolLM2's ~47
prompt tokens), the rows are packed further into one row, `common prefix + [rest of prompt, chosen, rejected]` per
pair, without padding: the prefix is computed once for the whole batch and every pair sees it, but not the other
pairs. Packing stops at MAX_PACKED_LENGTH positions, beyond which attention over one long row would cost more than
the positions saved. On the built-in data one row per pair computes 44% fewer positions than TRL's layout, one
packed row per batch 69% fewer (docs/performance.md).

SFT batches (`pack_sequences`, FastSFTTrainer) are packed the same way: one row, the tokens every sequence starts with
computed once.

Anything else (generation, a batch that is not such pairs, attention kernels that take no 4D mask, sliding-window
or MoE models) goes through the backbone as it is.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from dataclasses import dataclass

import torch

from prefopt.compat.models import replace_forward

_ACTIVE: contextvars.ContextVar[SharedPromptRows | None] = contextvars.ContextVar("shared_prompt_rows", default=None)
# Attention implementations that take a custom 4D mask as it is: sdpa a boolean one, eager an additive one.
MASKABLE_ATTENTION = ("sdpa", "eager")
PROMPT, CHOSEN, REJECTED, PAD = 0, 1, 2, -1
COMMON = -1  # the group of a packed row's common prefix, which every pair sees
# The longest packed row: its attention costs about length / (6 * hidden size) of the layers' matmuls.
MAX_PACKED_LENGTH = 1024


@dataclass
class SharedPromptRows:
    """A batch of TRL pair rows and the same batch as one row per pair (R = B), or packed into one row (R = 1)."""

    input_ids: torch.Tensor  # TRL's [2B, L], to recognise the batch when the backbone is called
    shared_ids: torch.Tensor  # [R, N]
    position_ids: torch.Tensor  # [R, N]
    segments: torch.Tensor  # [R, N]: PROMPT, CHOSEN, REJECTED or PAD
    groups: torch.Tensor  # [R, N]: the pair each position belongs to, COMMON for a packed row's common prefix
    source: torch.Tensor  # [2B, L]: index into the flattened [R*N] shared rows, -1 at padding

    @property
    def positions_saved(self) -> float:
        """Share of the positions TRL's layout computes that the shared rows do not."""
        return 1 - self.shared_ids.numel() / self.input_ids.numel()

    def attention_mask(self, implementation: str, dtype: torch.dtype) -> torch.Tensor:
        """[R, 1, N, N]: causal; a pair sees the common prefix and its own prompt, the rejected answer is blind to
        the chosen one; a padding position sees only itself (a fully masked row would give NaN)."""
        n = self.segments.shape[1]
        query, key = self.segments.unsqueeze(2), self.segments.unsqueeze(1)
        same_pair = self.groups.unsqueeze(2) == self.groups.unsqueeze(1)
        causal = torch.ones(n, n, dtype=torch.bool, device=self.segments.device).tril()
        own = same_pair & ((key == PROMPT) | (key == query))
        allowed = causal & (query != PAD) & ((self.groups.unsqueeze(1) == COMMON) | own)
        allowed |= torch.eye(n, dtype=torch.bool, device=self.segments.device)
        allowed = allowed.unsqueeze(1)
        if implementation == "sdpa":
            return allowed
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )

    def to_pair_rows(self, hidden: torch.Tensor) -> torch.Tensor:
        """[R, N, H] hidden states of the shared rows -> TRL's [2B, L, H], zeros at padding."""
        flat = hidden.reshape(-1, hidden.shape[-1])
        valid = self.source >= 0
        return flat[self.source.clamp(min=0)] * valid.unsqueeze(-1).to(hidden.dtype)

    def packed(self, max_length: int = MAX_PACKED_LENGTH) -> SharedPromptRows:
        """The pairs in one row, their common prefix once; this layout itself when there is no common prefix, one
        pair, or the row would be longer than max_length."""
        pairs = self.shared_ids.shape[0]
        if pairs < 2:
            return self
        real = self.segments != PAD
        lengths = real.sum(1)
        prefix = _common_prefix_length(self.shared_ids, self.segments)
        total = prefix + int((lengths - prefix).sum())
        if prefix == 0 or total > max_length:
            return self
        j = torch.arange(self.shared_ids.shape[1], device=real.device).expand(pairs, -1)
        offsets = prefix + torch.cumsum(lengths - prefix, 0) - (lengths - prefix)
        index = torch.where(j < prefix, j, offsets.unsqueeze(1) + j - prefix)  # each shared position's packed place
        index = torch.where(real, index, -1)
        pair_index = torch.arange(pairs, device=real.device).unsqueeze(1).expand_as(j)
        packed = {}
        for name, values, fill in (
            ("shared_ids", self.shared_ids, self.shared_ids[0, 0]),
            ("position_ids", self.position_ids, 0),
            ("segments", self.segments, PAD),
            ("groups", torch.where(j < prefix, COMMON, pair_index), COMMON),
        ):
            row = values.new_full((total,), fill)
            row[index[real]] = values[real]  # the prefix is written once per pair, always with the same values
            packed[name] = row.unsqueeze(0)
        flat_index = index.reshape(-1)
        source = torch.where(self.source >= 0, flat_index[self.source.clamp(min=0)], -1)
        return SharedPromptRows(self.input_ids, source=source, **packed)


def _common_prefix_length(ids: torch.Tensor, segments: torch.Tensor) -> int:
    """How many leading tokens every row shares, within every row's prompt."""
    same = ((ids == ids[:1]) & (segments == PROMPT)).all(0)
    return int(same.long().cumprod(0).sum())


def share_prompts(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor
) -> SharedPromptRows | None:
    """The shared layout of a DPO batch, or None if it is not right-padded [chosen; rejected] rows whose pairs
    start with the same prompt followed by their answer."""
    rows, length = input_ids.shape
    if rows % 2 or rows == 0:
        return None
    pairs = rows // 2
    real = attention_mask.bool()
    completion = completion_mask.bool() & real
    lengths = real.sum(1)
    prompt_lengths = lengths - completion.sum(1)
    position = torch.arange(length, device=input_ids.device).expand(rows, -1)
    right_padded = torch.equal(real, position < lengths.unsqueeze(1))
    answer_after_prompt = torch.equal(completion, real & (position >= prompt_lengths.unsqueeze(1)))
    if not (right_padded and answer_after_prompt):
        return None
    prompt = prompt_lengths[:pairs]
    in_prompt = position[:pairs] < prompt.unsqueeze(1)
    same_prompt = torch.equal(prompt, prompt_lengths[pairs:]) and bool(
        ((input_ids[:pairs] == input_ids[pairs:]) | ~in_prompt).all()
    )
    if not same_prompt:
        return None

    chosen, rejected = lengths[:pairs] - prompt, lengths[pairs:] - prompt
    shared_lengths = prompt + chosen + rejected
    n = int(shared_lengths.max())
    j = torch.arange(n, device=input_ids.device).expand(pairs, -1)
    p, c = prompt.unsqueeze(1), chosen.unsqueeze(1)
    segments = torch.full((pairs, n), PAD, dtype=torch.long, device=input_ids.device)
    segments[j < p] = PROMPT
    segments[(j >= p) & (j < p + c)] = CHOSEN
    segments[(j >= p + c) & (j < shared_lengths.unsqueeze(1))] = REJECTED
    # Where each shared position comes from in TRL's layout: the chosen row up to its end, then the rejected row.
    from_rejected = segments == REJECTED
    source_row = torch.arange(pairs, device=input_ids.device).unsqueeze(1) + pairs * from_rejected
    source_col = (j - c * from_rejected).clamp(max=length - 1)
    shared_ids = torch.where(segments == PAD, input_ids[0, 0], input_ids[source_row, source_col])
    position_ids = torch.where(segments == PAD, 0, source_col)

    # And back: TRL row b (chosen) column t is shared b, t; rejected row b is the prompt, then shared b, t + c.
    t = position[:pairs]
    base = (torch.arange(pairs, device=input_ids.device) * n).unsqueeze(1)
    chosen_source = torch.where(real[:pairs], base + t, -1)
    rejected_source = torch.where(real[pairs:], base + t + c * (t >= p), -1)
    groups = torch.arange(pairs, device=input_ids.device).unsqueeze(1).expand(pairs, n)
    sources = torch.cat([chosen_source, rejected_source])
    return SharedPromptRows(input_ids, shared_ids, position_ids, segments, groups, sources)


def pack_sequences(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SharedPromptRows | None:
    """Right-padded sequences (an SFT batch: prompt + completion each) packed into one row around the tokens they all
    start with, or None when that does not pay (see SharedPromptRows.packed) or the rows are not right-padded."""
    rows, length = input_ids.shape
    real = attention_mask.bool()
    position = torch.arange(length, device=input_ids.device).expand(rows, -1)
    if rows < 2 or not torch.equal(real, position < real.sum(1, keepdim=True)):
        return None
    flat = torch.arange(rows * length, device=input_ids.device).reshape(rows, length)
    layout = SharedPromptRows(
        input_ids,
        shared_ids=input_ids,
        position_ids=torch.where(real, position, 0),
        segments=torch.where(real, PROMPT, PAD),  # every token is context for the ones after it in its row
        groups=torch.arange(rows, device=input_ids.device).unsqueeze(1).expand(rows, length),
        source=torch.where(real, flat, -1),
    )
    packed = layout.packed()
    return packed if packed is not layout else None


@contextlib.contextmanager
def shared_prompt_rows(batch: dict, sequences: bool = False):
    """While open, patched backbones compute this batch as shared-prompt rows: TRL's collated DPO batch, or, with
    `sequences=True`, a batch of plain right-padded sequences (SFT) packed around their common prefix."""
    if sequences:
        layout = pack_sequences(batch["input_ids"], batch["attention_mask"])
    else:
        layout = share_prompts(batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        if layout is not None:  # packed once here, not on each backbone call (policy and reference)
            layout = layout.packed()
    token = _ACTIVE.set(layout)
    try:
        yield layout
    finally:
        _ACTIVE.reset(token)


def can_share_prompt(model) -> bool:
    config = model.config.get_text_config()
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    sliding = getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True)
    return (
        config._attn_implementation in MASKABLE_ATTENTION
        and layer_types == {"full_attention"}
        and not sliding
        and not getattr(config, "output_router_logits", False)
    )


def add_shared_prompt_backbone(model) -> bool:
    """Patch the backbone of causal LM `model` (the base model under a peft wrapper); False if it cannot share."""
    if not can_share_prompt(model):
        return False
    backbone = model.base_model
    if getattr(backbone, "_shares_prompt", False):
        return True
    implementation = model.config.get_text_config()._attn_implementation
    original_forward = backbone.forward

    @functools.wraps(original_forward)
    def forward(*args, input_ids=None, attention_mask=None, **kwargs):
        layout = _ACTIVE.get()
        plain = (
            layout is None
            or args
            or input_ids is None
            or input_ids.shape != layout.input_ids.shape
            or any(kwargs.get(k) is not None for k in ("position_ids", "inputs_embeds", "cache", "past_key_values"))
            or kwargs.get("use_cache")
            or kwargs.get("output_hidden_states")
            or kwargs.get("output_attentions")
            or not torch.equal(input_ids, layout.input_ids)
        )
        if plain:
            return original_forward(*args, input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k not in ("position_ids", "inputs_embeds")}
        dtype = backbone.get_input_embeddings().weight.dtype
        mask = layout.attention_mask(implementation, dtype if dtype.is_floating_point else torch.float32)
        outputs = original_forward(
            input_ids=layout.shared_ids, attention_mask=mask, position_ids=layout.position_ids, **kwargs
        )
        outputs.last_hidden_state = layout.to_pair_rows(outputs.last_hidden_state)
        return outputs

    replace_forward(backbone, forward)
    backbone._shares_prompt = True
    return True
