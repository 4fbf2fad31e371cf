"""SFT rows for `method=sft`: prompt and completion in TRL's prompt-completion format, so SFTTrainer trains on the
completion alone (the prompt is masked out of the loss).

Any source gives them: preference pairs their prompt + chosen (the built-in task, Hub and local pairs), unpaired
(KTO) rows their desirable completions, SFT data its own rows (prompt/completion fields, or a `messages` conversation
split by prefopt.data.local.messages_row). Conversational rows stay conversational and plain text stays plain, as in
the preference formats, so an SFT stage trains on the same rendering a later DPO stage sees.
"""

from __future__ import annotations

import logging

from datasets import Dataset

from prefopt.errors import RecipeError

log = logging.getLogger(__name__)

SFT_COLUMNS = ["prompt", "completion"]


def is_sft(column_names: list[str]) -> bool:
    """Prompt and completion only: nothing to prefer (no chosen/rejected) and nothing labelled (no KTO label)."""
    names = set(column_names)
    return set(SFT_COLUMNS) <= names and not names & {"chosen", "rejected", "label"}


def to_sft(ds: Dataset, name: str) -> Dataset:
    """SFT rows from whatever the source holds: pairs, unpaired rows or SFT rows."""
    names = set(ds.column_names)
    if {"prompt", "chosen", "rejected"} <= names:
        return ds.select_columns(["prompt", "chosen"]).rename_column("chosen", "completion")
    if {"prompt", "completion", "label"} <= names:
        desirable = ds.select([i for i, label in enumerate(ds["label"]) if label])
        log.info("dataset '%s': SFT on its %d desirable of %d rows", name, len(desirable), len(ds))
        return desirable.select_columns(SFT_COLUMNS)
    if is_sft(ds.column_names):
        return ds.select_columns(SFT_COLUMNS)
    raise RecipeError(
        f"dataset '{name}' (columns {ds.column_names}) has no prompt and completion (or chosen) to SFT on."
    )


def refuse_for_preferences(ds: Dataset, name: str, data_format: str) -> None:
    """A preference method given SFT-only data: stop before any training, with what to do instead."""
    if not is_sft(ds.column_names):
        return
    needs = "pairs (prompt, chosen, rejected)" if data_format == "paired" else "rows with a label (or pairs)"
    raise RecipeError(
        f"dataset '{name}' holds SFT rows (prompt, completion: no chosen/rejected, no label), but this method "
        f"trains on preferences and needs {needs}. Train on it with method=sft (`make train-sft`), then run this "
        f"method on preference data, or both at once with `make train-sft-dpo`."
    )
