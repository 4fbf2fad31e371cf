"""Row checks that protect training: pairs with nothing to prefer, the prompt/completion token boundary, and rows
that truncation at `train.max_length` would leave without a completion.

Token lengths are measured the way TRL's DPO and KTO trainers tokenize (trl/trainer/dpo_trainer.py,
`_prepare_dataset`): message lists go through the tokenizer's chat template, the prompt rendered with
`add_generation_prompt=True` and prompt+completion rendered whole; plain strings are tokenized as they are,
with the EOS token appended to each completion. The completion starts where the two token sequences diverge.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from prefopt.errors import RecipeError

log = logging.getLogger(__name__)

COMPLETION_FIELDS = ("chosen", "rejected", "completion")
_CHUNK = 512  # rows per batched tokenizer call


def is_messages(value) -> bool:
    return isinstance(value, list)


def completion_fields(column_names: Sequence[str]) -> list[str]:
    return [name for name in COMPLETION_FIELDS if name in column_names]


def _plain(value) -> object:
    return [(m["role"], m["content"].strip()) for m in value] if is_messages(value) else value.strip()


def drop_identical(
    rows: list[dict], source: str, max_fraction: float, where: Sequence[str] | None = None
) -> list[dict]:
    """Drop pairs whose chosen equals rejected (ignoring surrounding whitespace); too many of them is an error."""
    same = [i for i, row in enumerate(rows) if _plain(row["chosen"]) == _plain(row["rejected"])]
    if not same:
        return rows
    if len(same) > max_fraction * len(rows):
        examples = "; ".join(where[i] if where else f"row {i + 1}" for i in same[:3])
        raise RecipeError(
            f"{source}: chosen is identical to rejected in {len(same)} of {len(rows)} rows ({len(same) / len(rows):.0%}), "
            f"more than dataset.max_dropped_fraction={max_fraction} (e.g. {examples}). Such pairs carry no preference: "
            f"fix the data, or raise dataset.max_dropped_fraction to drop them and train on the rest."
        )
    log.warning(
        "%s: dropped %d of %d rows whose chosen is identical to rejected (nothing to prefer)",
        source,
        len(same),
        len(rows),
    )
    dropped = set(same)
    return [row for i, row in enumerate(rows) if i not in dropped]


@dataclass(frozen=True)
class Boundary:
    """The tokenized prompt and prompt+completion; `ok` when the prompt's ids are a prefix of the full ids."""

    prompt_ids: list[int]
    full_ids: list[int]

    @property
    def shared(self) -> int:
        n = 0
        for a, b in zip(self.prompt_ids, self.full_ids):
            if a != b:
                break
            n += 1
        return n

    @property
    def ok(self) -> bool:
        return self.shared == len(self.prompt_ids)


def boundaries(tokenizer: PreTrainedTokenizerBase, prompts: Sequence, completions: Sequence) -> list[Boundary]:
    """One Boundary per (prompt, completion), both conversational (message lists) or both plain strings."""
    if not prompts:
        return []
    if is_messages(prompts[0]):
        prompt_ids = tokenizer.apply_chat_template(
            list(prompts), add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        full_ids = tokenizer.apply_chat_template(
            [p + c for p, c in zip(prompts, completions)], tokenize=True, return_dict=True
        )["input_ids"]
    else:
        eos = tokenizer.eos_token or ""
        prompt_ids = tokenizer(list(prompts))["input_ids"]
        full_ids = tokenizer([p + (c if c.endswith(eos) else c + eos) for p, c in zip(prompts, completions)])[
            "input_ids"
        ]
    return [Boundary(list(p), list(f)) for p, f in zip(prompt_ids, full_ids)]


def check_prompt_prefix(rows: Sequence[dict], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Indices of rows whose tokenized prompt is not a prefix of prompt+completion (TRL warns about these)."""
    return measure(rows, tokenizer).mismatched


@dataclass
class TokenLengths:
    """Per-row token counts: `prompt` is the part shared with every completion; a completion is the rest."""

    prompt: list[int] = field(default_factory=list)
    completions: dict[str, list[int]] = field(default_factory=dict)
    mismatched: list[int] = field(default_factory=list)  # rows whose prompt is not a token prefix
    cut_off: dict[int, str] = field(default_factory=dict)  # row -> the prompt text left out of the sequence


def measure(rows: Dataset | Sequence[dict], tokenizer: PreTrainedTokenizerBase) -> TokenLengths:
    names = completion_fields(rows.column_names if isinstance(rows, Dataset) else list(rows[0]) if rows else [])
    lengths = TokenLengths(completions={name: [] for name in names})
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        if isinstance(chunk, dict):  # Dataset slices are columnar
            prompts, sides = chunk["prompt"], {name: chunk[name] for name in names}
        else:
            prompts, sides = [r["prompt"] for r in chunk], {name: [r[name] for r in chunk] for name in names}
        per_side = {name: boundaries(tokenizer, prompts, sides[name]) for name in names}
        for i in range(len(prompts)):
            row_sides = [per_side[name][i] for name in names]
            shared = min(b.shared for b in row_sides)  # TRL: the completion starts where any side diverges
            lengths.prompt.append(shared)
            for name, b in zip(names, row_sides):
                lengths.completions[name].append(len(b.full_ids) - shared)
            if shared < len(row_sides[0].prompt_ids):
                lengths.mismatched.append(start + i)
                lengths.cut_off[start + i] = tokenizer.decode(row_sides[0].prompt_ids[shared:])
    return lengths


def drop_unusable(
    train: Dataset, eval_: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int | None
) -> tuple[Dataset, Dataset]:
    """Drop rows whose prompt alone fills `max_length` (truncation would leave no completion to train on).

    Also warns, with a count and an example, when the tokenized prompt is not a prefix of prompt+completion.
    """
    return _usable(train, "train", tokenizer, max_length), _usable(eval_, "eval", tokenizer, max_length)


def _usable(ds: Dataset, split: str, tokenizer: PreTrainedTokenizerBase, max_length: int | None) -> Dataset:
    if len(ds) == 0:
        return ds
    lengths = measure(ds, tokenizer)
    if lengths.mismatched:
        first = lengths.mismatched[0]
        log.warning(
            "%s: in %d of %d rows the tokenized prompt is not a prefix of prompt+completion (the chat template renders "
            "the prompt differently, or tokens merge across the boundary); row %d loses %r from its prompt",
            split,
            len(lengths.mismatched),
            len(ds),
            first,
            lengths.cut_off[first],
        )
    if max_length is None:
        return ds
    keep = [i for i, n in enumerate(lengths.prompt) if n < max_length]
    if not keep:
        raise RecipeError(
            f"{split}: every prompt is at least train.max_length={max_length} tokens long (longest {max(lengths.prompt)}), "
            f"so truncation leaves no completion to train on. Raise train.max_length."
        )
    if len(keep) < len(ds):
        log.warning(
            "%s: dropped %d of %d rows whose prompt alone fills train.max_length=%d (no completion token would be left)",
            split,
            len(ds) - len(keep),
            len(ds),
            max_length,
        )
        return ds.select(keep)
    return ds
