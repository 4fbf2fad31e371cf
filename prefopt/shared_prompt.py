"""One row per pair: the prompt goes through the model once, for the chosen and the rejected answer together.

TRL's pairwise trainers (DPO, ORPO, CPO/SimPO, reward models) stack a batch as [chosen rows; rejected rows], each
row `prompt + answer`, right-padded to the longest: every prompt is computed twice and each pair's shorter answer is
padded to the longer one. Attention is causal, so a prompt's hidden states are the same in both rows. While a
trainer holds `shared_prompt_rows(batch)`, the backbone of a model patched with `add_shared_prompt_backbone`
computes such a batch as one row per pair, `prompt + chosen + rejected`: the rejected answer's positions restart
where the prompt ends and its tokens do not see the chosen ones. The hidden states are then put back in TRL's layout,
so the LM head (or a reward model's score head), the loss and every metric run unchanged on the same numbers (to
float rounding; tests/prefopt/test_shared_prompt.py). A reward model's rows have no prompt/answer split: the tokens a
pair's two rows start with are its prompt (`pair_answers`).

When every pair of a batch starts with the same tokens (a chat template's system prompt: 24 of SmolLM2's ~47
prompt tokens), the rows are packed further into one row, `common prefix + [rest of prompt, chosen, rejected]` per
pair, without padding: the prefix is computed once for the whole batch and every pair sees it, but not the other
pairs. Packing stops at MAX_PACKED_LENGTH positions, beyond which attention over one long row would cost more than
the positions saved. On the built-in data one row per pair computes 44% fewer positions than TRL's layout, one
packed row per batch 69% fewer (docs/performance.md).

ORPO's and CPO's logits/* metrics average the logits of every position of TRL's rows, padding included: with
`padding_queries` those positions are computed too, as queries that see what they see in TRL's layout and that
nothing sees; in a packed row they come last and, when the forward builds a graph, go through the model after the
rest from its KV cache without gradient (they feed only the metrics).

SFT batches (`pack_sequences`, FastSFTTrainer) are packed the same way: one row, the tokens every sequence starts with
computed once. KTO's completion rows and mismatched KL rows (FastKTOTrainer) start with the same prompts row by row,
but TRL scores them in two forwards: `joint_rows` computes both batches as one packed row of pairs (prompt,
completion, KL completion), the KL completions last; the first forward asked for either batch computes both and the
next forward, on the other batch, is served its hidden states (`JointRows`).

Anything else (generation, a batch that is not such pairs, attention kernels that take no 4D mask, sliding-window
or MoE models) goes through the backbone as it is.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
from dataclasses import dataclass

import torch
from accelerate.utils import is_peft_model
from transformers import DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast

from prefopt.compat.models import replace_forward

_ACTIVE: contextvars.ContextVar[tuple[SharedPromptRows | JointRows, ...]] = contextvars.ContextVar(
    "shared_prompt_rows", default=()
)
# Attention implementations that take a custom 4D mask as it is: sdpa a boolean one, eager an additive one.
MASKABLE_ATTENTION = ("sdpa", "eager")
PROMPT, CHOSEN, REJECTED, PAD = 0, 1, 2, -1
# The padding positions of TRL's chosen and rejected rows, for trainers whose metrics average over every position
# (ORPO's and CPO's logits/*): queries only, that see what a padding position of that row sees in TRL's layout, the
# row's real tokens, and that nothing sees.
CHOSEN_PADDING, REJECTED_PADDING = 3, 4
# Indexed by a query's segment: the answer segment whose keys it sees (PAD, -1, reads the last entry).
ROW_SEGMENT = torch.tensor([PROMPT, CHOSEN, REJECTED, CHOSEN, REJECTED, PAD])
COMMON = -1  # the group of a packed row's common prefix, which every pair sees
# The longest packed row: its attention costs about length / (6 * hidden size) of the layers' matmuls.
MAX_PACKED_LENGTH = 1024


@dataclass
class SharedPromptRows:
    """A batch of TRL pair rows and the same batch as one row per pair (R = B), or packed into one row (R = 1)."""

    input_ids: torch.Tensor  # TRL's [2B, L], to recognise the batch when the backbone is called
    shared_ids: torch.Tensor  # [R, N]
    position_ids: torch.Tensor  # [R, N]
    segments: torch.Tensor  # [R, N]: PROMPT, CHOSEN, REJECTED, CHOSEN_PADDING, REJECTED_PADDING or PAD
    groups: torch.Tensor  # [R, N]: the pair each position belongs to, COMMON for a packed row's common prefix
    source: torch.Tensor  # [2B, L]: index into the flattened [R*N] shared rows, -1 at padding
    # The segments a packed row puts last, computed after the rest from its KV cache and without gradient when the
    # forward builds a graph: what feeds only metrics.
    trailing: tuple[int, ...] = (CHOSEN_PADDING, REJECTED_PADDING)

    @property
    def positions_saved(self) -> float:
        """Share of the positions TRL's layout computes that the shared rows do not."""
        return 1 - self.shared_ids.numel() / self.input_ids.numel()

    def attention_mask(self, implementation: str, dtype: torch.dtype) -> torch.Tensor:
        """[R, 1, N, N]: causal; a pair sees the common prefix and its own prompt, the rejected answer is blind to
        the chosen one, a padding query sees its row's real tokens only; a PAD position sees only itself (a fully
        masked row would give NaN)."""
        n = self.segments.shape[1]
        query, key = self.segments.unsqueeze(2), self.segments.unsqueeze(1)
        same_pair = self.groups.unsqueeze(2) == self.groups.unsqueeze(1)
        causal = torch.ones(n, n, dtype=torch.bool, device=self.segments.device).tril()
        own = same_pair & ((key == PROMPT) | (key == ROW_SEGMENT.to(query.device)[query]))
        allowed = causal & (query != PAD) & ((self.groups.unsqueeze(1) == COMMON) | own)
        allowed |= torch.eye(n, dtype=torch.bool, device=self.segments.device) & (query == PAD)
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

    def _trailing(self, segments: torch.Tensor) -> torch.Tensor:
        return torch.isin(segments, torch.tensor(self.trailing, device=segments.device))

    @property
    def trailing_queries(self) -> int:
        """How many trailing positions end the row of a packed layout (it puts them last); 0 with several rows."""
        if self.segments.shape[0] != 1:
            return 0
        queries = self._trailing(self.segments[0])
        count = int(queries.sum())
        return count if count and bool(queries[-count:].all()) else 0

    def packed(self, max_length: int = MAX_PACKED_LENGTH) -> SharedPromptRows:
        """The pairs in one row, their common prefix once, then every trailing position (a pair's trailing segments
        must end its row); this layout itself when there is no common prefix, one pair, or the row would be longer
        than max_length."""
        pairs = self.shared_ids.shape[0]
        if pairs < 2:
            return self
        real = self.segments != PAD
        queries = self._trailing(self.segments)
        lengths, query_lengths = (real & ~queries).sum(1), queries.sum(1)
        prefix = _common_prefix_length(self.shared_ids, self.segments)
        total_computed = prefix + int((lengths - prefix).sum())
        total = total_computed + int(query_lengths.sum())
        if prefix == 0 or total > max_length:
            return self
        j = torch.arange(self.shared_ids.shape[1], device=real.device).expand(pairs, -1)
        offsets = prefix + torch.cumsum(lengths - prefix, 0) - (lengths - prefix)
        index = torch.where(j < prefix, j, offsets.unsqueeze(1) + j - prefix)  # each shared position's packed place
        # A pair's trailing positions follow the rest of its row; packed, all of them come last.
        query_offsets = total_computed + torch.cumsum(query_lengths, 0) - query_lengths
        index = torch.where(queries, (query_offsets - lengths).unsqueeze(1) + j, index)
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
        return SharedPromptRows(self.input_ids, source=source, trailing=self.trailing, **packed)


def _common_prefix_length(ids: torch.Tensor, segments: torch.Tensor) -> int:
    """How many leading tokens every row shares, within every row's prompt."""
    same = ((ids == ids[:1]) & (segments == PROMPT)).all(0)
    return int(same.long().cumprod(0).sum())


def share_prompts(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    padding_queries: bool = False,
) -> SharedPromptRows | None:
    """The shared layout of a batch of pairs, or None if it is not right-padded [chosen; rejected] rows whose pairs
    start with the same prompt followed by their answer. With `padding_queries`, TRL's padding positions are computed
    too (CHOSEN_PADDING, REJECTED_PADDING), so that every position of TRL's layout gets its hidden state."""
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

    # Each shared row is a run of blocks: (segment, its length, TRL row it comes from: 0 chosen or 1 rejected, its
    # first column there).
    chosen_end, rejected_end = lengths[:pairs], lengths[pairs:]
    blocks = [
        (PROMPT, prompt, 0, torch.zeros_like(prompt)),
        (CHOSEN, chosen_end - prompt, 0, prompt),
        (REJECTED, rejected_end - prompt, 1, prompt),
    ]
    if padding_queries:
        blocks += [
            (CHOSEN_PADDING, length - chosen_end, 0, chosen_end),
            (REJECTED_PADDING, length - rejected_end, 1, rejected_end),
        ]
    n = int(sum(size for _, size, _, _ in blocks).max())
    j = torch.arange(n, device=input_ids.device).expand(pairs, -1)
    pair_index = torch.arange(pairs, device=input_ids.device).unsqueeze(1)
    segments = torch.full((pairs, n), PAD, dtype=torch.long, device=input_ids.device)
    source_row, source_col = pair_index.expand(pairs, n).clone(), torch.zeros_like(segments)
    start = torch.zeros_like(prompt).unsqueeze(1)
    for segment, size, side, first_column in blocks:
        inside = (j >= start) & (j < start + size.unsqueeze(1))
        segments[inside] = segment
        source_row = torch.where(inside, pair_index + pairs * side, source_row)
        source_col = torch.where(inside, j - start + first_column.unsqueeze(1), source_col)
        start = start + size.unsqueeze(1)
    computed = segments != PAD
    shared_ids = torch.where(computed, input_ids[source_row, source_col], input_ids[0, 0])
    position_ids = torch.where(computed, source_col, 0)

    # And back: each TRL position from the shared position that computes it; a rejected row's prompt is its chosen
    # row's.
    sources = torch.full((rows, length), -1, dtype=torch.long, device=input_ids.device)
    sources[source_row[computed], source_col[computed]] = (pair_index * n + j)[computed]
    sources[pairs:][in_prompt] = sources[:pairs][in_prompt]
    groups = pair_index.expand(pairs, n)
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


@dataclass
class JointRows:
    """Two batches of right-padded rows, `prompt_i + answer_i` and `prompt_i + other_i` (KTO: the completion rows and
    the mismatched KL rows), that TRL scores in two forwards, computed in one: `layout` holds both as pairs, the
    second batch's answers last. The first forward asked for either batch computes both; the next one, on the other
    batch, is served the hidden states kept for it (any other call drops them).

    `gradient_first`: the first computation builds the graph for the first batch, however the call was made (TRL
    asks for the KL rows under no_grad, then for the completion rows with gradient) and computes the second batch's
    answers from the KV cache without it; the computations after it (the reference's) build none."""

    first: torch.Tensor  # the first batch's input_ids [B, L1]
    second: torch.Tensor  # [B, L2]
    layout: SharedPromptRows  # [first; second], padded to one width
    gradient_first: bool
    kept: tuple[int, torch.Tensor] | None = None  # (batch, its hidden states) for the next call

    def batch_of(self, input_ids: torch.Tensor) -> int | None:
        for batch, ids in enumerate((self.first, self.second)):
            if input_ids.shape == ids.shape and torch.equal(input_ids, ids):
                return batch
        return None

    def hidden_states(self, batch: int, compute) -> torch.Tensor:
        """The hidden states of `batch` in TRL's layout; `compute(layout)` gives [first; second]'s."""
        kept, self.kept = self.kept, None
        if kept is not None and kept[0] == batch:
            return kept[1]
        gradient, self.gradient_first = self.gradient_first, False
        rows = self.first.shape[0]
        with torch.enable_grad() if gradient else contextlib.nullcontext():  # slicing too, or it drops the graph
            hidden = compute(self.layout)
            both = [hidden[:rows, : self.first.shape[1]], hidden[rows:, : self.second.shape[1]].detach()]
        self.kept = (1 - batch, both[1 - batch])
        return both[batch]


def joint_rows(first: dict, second: dict, gradient_first: bool) -> JointRows | None:
    """`first` and `second` (each input_ids, attention_mask, completion_mask) as JointRows, packed around their common
    prefix, or None when their rows do not start with the same prompts (see share_prompts)."""
    width = max(first["input_ids"].shape[1], second["input_ids"].shape[1])

    def stacked(key):
        return torch.cat(
            [torch.nn.functional.pad(batch[key], (0, width - batch[key].shape[1])) for batch in (first, second)]
        )

    layout = share_prompts(stacked("input_ids"), stacked("attention_mask"), stacked("completion_mask"))
    if layout is None:
        return None
    layout = dataclasses.replace(layout, trailing=(REJECTED,)).packed()
    return JointRows(first["input_ids"], second["input_ids"], layout, gradient_first)


def pair_answers(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """For [chosen; rejected] rows without a prompt/answer split (a reward model's batch): the completion mask that
    makes each pair's prompt the tokens its two rows start with."""
    pairs = input_ids.shape[0] // 2
    real = attention_mask.bool()
    same = (input_ids[:pairs] == input_ids[pairs:]) & real[:pairs] & real[pairs : 2 * pairs]
    shared = same.long().cumprod(1).sum(1).repeat(2)
    position = torch.arange(input_ids.shape[1], device=input_ids.device)
    return (real & (position >= shared.unsqueeze(1))).long()


@contextlib.contextmanager
def rows_computed_as(*layouts: SharedPromptRows | JointRows | None):
    """While open, a patched backbone called on the input_ids of one of `layouts` computes them in that layout."""
    token = _ACTIVE.set(tuple(layout for layout in layouts if layout is not None))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def shared_prompt_rows(batch: dict, sequences: bool = False, padding_queries: bool = False):
    """While open, patched backbones compute this batch as shared-prompt rows: TRL's collated DPO batch, or, with
    `sequences=True`, a batch of plain right-padded sequences (SFT) packed around their common prefix;
    `padding_queries`: see share_prompts."""
    if sequences:
        layout = pack_sequences(batch["input_ids"], batch["attention_mask"])
    else:
        layout = share_prompts(batch["input_ids"], batch["attention_mask"], batch["completion_mask"], padding_queries)
        if layout is not None:  # packed once here, not on each backbone call (policy and reference)
            layout = layout.packed()
    with rows_computed_as(layout):
        yield layout


def _layout_of(input_ids: torch.Tensor | None) -> SharedPromptRows | tuple[JointRows, int] | None:
    """The active layout for a backbone call on `input_ids`: SharedPromptRows, or a JointRows and which batch."""
    if input_ids is None:
        return None
    found = None
    for layout in _ACTIVE.get():
        if isinstance(layout, JointRows):
            batch = layout.batch_of(input_ids)
            if batch is None:
                layout.kept = None  # kept hidden states are served only to the very next call
            elif found is None:
                found = (layout, batch)
        elif found is None and input_ids.shape == layout.input_ids.shape and torch.equal(input_ids, layout.input_ids):
            found = layout
    return found


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
    """Patch the backbone of causal LM `model` (or of the model under its peft wrapper); False if it cannot share."""
    if is_peft_model(model):
        model = model.get_base_model()
    if not can_share_prompt(model):
        return False
    backbone = model.base_model
    if getattr(backbone, "_shares_prompt", False):
        return True
    implementation = model.config.get_text_config()._attn_implementation
    original_forward = backbone.forward

    @functools.wraps(original_forward)
    def forward(*args, input_ids=None, attention_mask=None, **kwargs):
        if args and input_ids is None:  # sequence classifiers pass input_ids by position
            input_ids, *args = args
        layout = None if args else _layout_of(input_ids)
        plain = (
            layout is None
            or any(kwargs.get(k) is not None for k in ("position_ids", "inputs_embeds", "cache", "past_key_values"))
            or kwargs.get("use_cache")
            or kwargs.get("output_hidden_states")
            or kwargs.get("output_attentions")
        )
        if plain:
            return original_forward(*args, input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k not in ("position_ids", "inputs_embeds")}

        def compute(layout: SharedPromptRows) -> torch.Tensor:
            dtype = backbone.get_input_embeddings().weight.dtype
            mask = layout.attention_mask(implementation, dtype if dtype.is_floating_point else torch.float32)
            queries = layout.trailing_queries if torch.is_grad_enabled() and not _checkpointed(backbone) else 0
            if queries:
                hidden = _forward_queries_without_gradient(original_forward, backbone, layout, mask, queries, kwargs)
            else:
                hidden = original_forward(
                    input_ids=layout.shared_ids, attention_mask=mask, position_ids=layout.position_ids, **kwargs
                ).last_hidden_state
            return layout.to_pair_rows(hidden)

        if isinstance(layout, tuple):
            joint, batch = layout
            return BaseModelOutputWithPast(last_hidden_state=joint.hidden_states(batch, compute))
        return BaseModelOutputWithPast(last_hidden_state=compute(layout))

    replace_forward(backbone, forward)
    backbone._shares_prompt = True
    return True


def _checkpointed(backbone) -> bool:
    """Whether activation checkpointing recomputes its layers now: they then drop any KV cache."""
    return backbone.training and any(
        getattr(layer, "gradient_checkpointing", False)
        for layer in backbone.modules()
        if isinstance(layer, GradientCheckpointingLayer)
    )


def _forward_queries_without_gradient(forward, backbone, layout, mask, queries: int, kwargs) -> torch.Tensor:
    """The packed row's hidden states, its trailing padding queries computed after the rest from its KV cache and
    without gradient: they feed only metrics, so they need no backward pass."""
    computed = layout.shared_ids.shape[1] - queries
    kwargs = {k: v for k, v in kwargs.items() if k not in ("use_cache", "cache", "past_key_values")}
    cache = DynamicCache(config=backbone.config)
    hidden = forward(
        input_ids=layout.shared_ids[:, :computed],
        attention_mask=mask[:, :, :computed, :computed],
        position_ids=layout.position_ids[:, :computed],
        cache=cache,
        use_cache=True,
        **kwargs,
    ).last_hidden_state
    with torch.no_grad():
        query_hidden = forward(
            input_ids=layout.shared_ids[:, computed:],
            attention_mask=mask[:, :, computed:, :],
            position_ids=layout.position_ids[:, computed:],
            cache=cache,
            use_cache=True,
            **kwargs,
        ).last_hidden_state
    return torch.cat([hidden, query_hidden], dim=1)
