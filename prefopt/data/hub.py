"""Hub datasets, or local copies of them: the named converters and any dataset in TRL's standard formats.

`format: hh-rlhf | ultrafeedback | kto-mix | ultrachat` convert those datasets' own layouts; `format: hub` reads any
dataset in TRL's formats (trl/data_utils.py): paired prompt/chosen/rejected, with the prompt explicit or implicit
in chosen/rejected, unpaired prompt/completion/label, or SFT prompt/completion or messages, conversational or plain
text, under any column names (`dataset.columns.chosen=...`). Each converter maps one raw row to {"prompt", "chosen",
"rejected"}, {"prompt", "completion", "label"} or, for SFT, {"prompt", "completion"}.

A source without a separate eval split (one file, a copy with only the train split, `dataset.eval_split=null`)
holds out `dataset.eval_fraction` of its prompts, so no evaluated prompt is trained on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from datasets import Dataset
from omegaconf import DictConfig

from prefopt.data.checks import drop_identical, is_messages
from prefopt.data.local import _label, as_one_format, check_text, hold_out, messages_row
from prefopt.errors import RecipeError

log = logging.getLogger(__name__)

# hh-rlhf transcripts alternate "\n\nHuman: ..." and "\n\nAssistant: ..." turns.
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".gz": "json", ".csv": "csv", ".parquet": "parquet"}


def _hh_messages(transcript: str) -> list[dict]:
    parts = _HH_TURN.split(transcript)
    # parts = [preamble, role, text, role, text, ...]
    return [
        {"role": "user" if role == "Human" else "assistant", "content": text.strip()}
        for role, text in zip(parts[1::2], parts[2::2])
    ]


def hh_rlhf_row(row: dict) -> dict | None:
    """Anthropic/hh-rlhf: the prompt is everything before the LAST assistant turn (multi-turn kept).

    Splitting at the first turn instead would train on the whole rest of the dialogue as the answer.
    """
    chosen, rejected = _hh_messages(row["chosen"]), _hh_messages(row["rejected"])
    if len(chosen) < 2 or chosen[-1]["role"] != "assistant" or rejected[-1:] and rejected[-1]["role"] != "assistant":
        return None
    prompt = chosen[:-1]
    if rejected[:-1] != prompt:  # both sides must answer the same conversation
        return None
    return {"prompt": prompt, "chosen": chosen[-1:], "rejected": rejected[-1:]}


def ultrafeedback_row(row: dict) -> dict | None:
    """HuggingFaceH4/ultrafeedback_binarized: chosen/rejected are full message lists ending in the answer."""
    chosen, rejected = row["chosen"], row["rejected"]
    if not chosen or not rejected or chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        return None
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def kto_mix_row(row: dict) -> dict | None:
    """trl-lib/kto-mix-14k: already unpaired, {"prompt": [messages], "completion": [messages], "label": bool}."""
    if not row["prompt"] or not row["completion"]:
        return None
    return {"prompt": row["prompt"], "completion": row["completion"], "label": bool(row["label"])}


def ultrachat_row(row: dict) -> dict | None:
    """HuggingFaceH4/ultrachat_200k: SFT rows, {"messages": [...]} whose last assistant turn is the completion."""
    try:
        return messages_row(row["messages"], "ultrachat")
    except RecipeError:  # no assistant turn, a trailing user turn, an empty message: skipped and counted
        return None


# format name -> (converter, the raw columns it reads)
CONVERTERS = {
    "hh-rlhf": (hh_rlhf_row, ("chosen", "rejected")),
    "ultrafeedback": (ultrafeedback_row, ("chosen", "rejected")),
    "kto-mix": (kto_mix_row, ("prompt", "completion", "label")),
    "ultrachat": (ultrachat_row, ("messages",)),
}


# --- format: hub, TRL's standard preference formats -----------------------------------------------------------


def standard_converter(column_names: list[str], columns: Mapping[str, str], where: str) -> Callable[[dict, str], dict]:
    """A converter for a dataset with these columns: paired (explicit or implicit prompt), unpaired, or SFT
    (prompt/completion without a label, or a messages conversation).

    Raises, naming every missing column and the `dataset.columns.<field>=` override, when the dataset has none.
    """
    present = set(column_names)
    column = lambda field: columns.get(field, field)  # noqa: E731
    paired, unpaired = ("chosen", "rejected"), ("prompt", "completion", "label")
    if all(column(f) in present for f in paired):
        return lambda record, at: standard_pair(record, columns, at, has_prompt=column("prompt") in present)
    if all(column(f) in present for f in unpaired):
        return lambda record, at: _unpaired_row(record, columns, at)
    if column("prompt") in present and column("completion") in present:
        return lambda record, at: _sft_row(record, columns, at)
    if column("messages") in present:
        return lambda record, at: messages_row(record[column("messages")], at, "'messages'")
    wanted = unpaired if any(column(f) in present for f in ("completion", "label")) else paired
    missing = [f for f in wanted if column(f) not in present]
    fixes = " ".join(f"dataset.columns.{f}=<your column>" for f in missing)
    raise RecipeError(
        f"{where}: missing column {' and '.join(f'{column(f)!r} (field {f})' for f in missing)}; "
        f"its columns are {', '.join(column_names)}. "
        f"Map yours with {fixes}. Paired data needs chosen and rejected (prompt optional when they are full "
        f"conversations), unpaired (KTO) data prompt, completion and label, SFT data prompt and completion or "
        f"messages (dataset.columns.messages=<your column>)."
    )


def standard_pair(record: dict, columns: Mapping[str, str], where: str, has_prompt: bool) -> dict:
    """A paired row; without a prompt column the prompt is the common start of chosen and rejected.

    As TRL's maybe_extract_prompt: a prompt column is used when it is conversational exactly when chosen is
    (ultrafeedback_binarized keeps a plain-text prompt beside full conversations: there the prompt is extracted).
    """
    from trl.data_utils import extract_prompt

    named = lambda field: f"'{field}'" + (f" (column '{columns[field]}')" if columns.get(field, field) != field else "")  # noqa: E731
    chosen = check_text(record[columns.get("chosen", "chosen")], where, named("chosen"), is_completion=True)
    rejected = check_text(record[columns.get("rejected", "rejected")], where, named("rejected"), is_completion=True)
    prompt = record[columns.get("prompt", "prompt")] if has_prompt else None
    if prompt is not None and is_messages(prompt) == is_messages(chosen):
        prompt = check_text(prompt, where, named("prompt"), is_completion=False)
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    if is_messages(chosen) != is_messages(rejected):
        raise RecipeError(f"{where}: chosen and rejected must both be message lists or both text to find the prompt.")
    extracted = extract_prompt({"chosen": chosen, "rejected": rejected})
    if not extracted["prompt"]:
        raise RecipeError(
            f"{where}: chosen and rejected share no leading {'messages' if is_messages(chosen) else 'text'}, so "
            f"there is no implicit prompt; give the prompt column with dataset.columns.prompt=<your column>."
        )
    return {
        "prompt": check_text(extracted["prompt"], where, "the prompt (common start of chosen and rejected)", False),
        "chosen": check_text(extracted["chosen"], where, f"{named('chosen')} after the prompt", True),
        "rejected": check_text(extracted["rejected"], where, f"{named('rejected')} after the prompt", True),
    }


def _unpaired_row(record: dict, columns: Mapping[str, str], where: str) -> dict:
    get = lambda field: record[columns.get(field, field)]  # noqa: E731
    return {
        "prompt": check_text(get("prompt"), where, "'prompt'", is_completion=False),
        "completion": check_text(get("completion"), where, "'completion'", is_completion=True),
        "label": _label(get("label"), where, "'label'"),
    }


def _sft_row(record: dict, columns: Mapping[str, str], where: str) -> dict:
    get = lambda field: record[columns.get(field, field)]  # noqa: E731
    return {
        "prompt": check_text(get("prompt"), where, "'prompt'", is_completion=False),
        "completion": check_text(get("completion"), where, "'completion'", is_completion=True),
    }


# --- loading ----------------------------------------------------------------------------------------------------


class _Source:
    """dataset.path as the datasets library reads it: one file, a local copy in the Hub's layout, or a Hub id."""

    def __init__(self, cfg: DictConfig):
        if not cfg.get("path"):
            raise RecipeError(
                f"dataset '{cfg.name}' needs dataset.path=<org/name on the Hub, a local copy of it, or one "
                f".jsonl/.parquet/.csv file>."
            )
        self.cfg, self.source = cfg, str(cfg.path)
        self.local = Path(self.source).expanduser()
        if self.local.is_file() and self.builder() is None:
            raise RecipeError(f"dataset '{cfg.name}': cannot read {self.local} (use .jsonl, .json, .csv or .parquet)")

    def builder(self) -> str | None:
        return _FILE_BUILDERS.get(self.local.suffix)

    def _call(self, what: str, fn: Callable):
        try:
            return fn()
        except (ValueError, FileNotFoundError, ConnectionError, OSError) as exc:
            if isinstance(exc, RecipeError):
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise RecipeError(
                f"dataset '{self.cfg.name}': could not load {what} from {self.source} ({type(exc).__name__}: {first}). "
                f"Offline, point dataset.path at a local copy in the Hub's format."
            ) from None

    def splits(self, train_split: str) -> dict[str, Dataset]:
        """Every split at once (the library prepares them all anyway); a single file is the train split."""
        import datasets

        if self.local.is_file():
            files = {train_split: str(self.local)}
            return dict(self._call("the file", lambda: datasets.load_dataset(self.builder(), data_files=files)))
        path = str(self.local) if self.local.exists() else self.source
        name, data_dir = self.cfg.get("subset"), self.cfg.get("data_dir")
        return dict(self._call("it", lambda: datasets.load_dataset(path, name=name, data_dir=data_dir)))


def load_splits(cfg: DictConfig) -> tuple[list[dict], list[dict]]:
    """(train, eval) rows from the dataset's own splits, or with eval_fraction of the train prompts held out."""
    source = _Source(cfg)
    train_split = cfg.get("split") or cfg.get("train_split") or "train"
    eval_split = None if cfg.get("split") else cfg.get("eval_split")
    splits = source.splits(train_split)
    names = list(splits)
    if train_split not in names:
        raise RecipeError(
            f"dataset '{cfg.name}' ({cfg.path}): no split '{train_split}'; its splits are {', '.join(names)}. "
            f"Set dataset.train_split=<one of them>."
        )
    if eval_split is not None and eval_split not in names and set(names) != {train_split}:
        raise RecipeError(
            f"dataset '{cfg.name}' ({cfg.path}): no split '{eval_split}'; its splits are {', '.join(names)}. "
            f"Set dataset.eval_split=<one of them>, or dataset.eval_split=null to hold out dataset.eval_fraction "
            f"of the '{train_split}' prompts."
        )
    if eval_split is not None and eval_split in names:
        train = _convert(splits[train_split], cfg, train_split, cfg.get("max_train_samples"))
        test = _convert(splits[eval_split], cfg, eval_split, cfg.get("max_eval_samples"))
    else:
        # All rows, not the first max_train_samples: which prompts are held out must not change with the cut.
        rows = _convert(splits[train_split], cfg, train_split, None)
        train, test = hold_out(rows, cfg.get("eval_fraction"), cfg.get("split_seed", 0), f"{cfg.path}")
        log.info(
            "dataset '%s': no separate eval split in %s; held out %d of %d rows (%s of the prompts, split_seed %s)",
            cfg.name,
            cfg.path,
            len(test),
            len(rows),
            cfg.get("eval_fraction"),
            cfg.get("split_seed", 0),
        )
    train, test = as_one_format(train, test)
    return train, test


def _convert(raw: Dataset, cfg: DictConfig, split: str, limit: int | None) -> list[dict]:
    where = f"dataset '{cfg.name}' ({cfg.path}, split '{split}')"
    if limit:  # convert no more rows than we will use
        raw = raw.select(range(min(len(raw), limit * 2)))
    if cfg.format == "hub":
        rows = _convert_standard(raw, cfg, where)
    else:
        rows = _convert_named(raw, cfg, where)
    if not rows:
        raise RecipeError(f"{where}: no usable rows.")
    if "chosen" in rows[0]:
        rows = drop_identical(rows, where, cfg.get("max_dropped_fraction", 0.1))
    return rows


def _convert_named(raw: Dataset, cfg: DictConfig, where: str) -> list[dict]:
    convert, needed = CONVERTERS[cfg.format]
    missing = [column for column in needed if column not in raw.column_names]
    if missing:
        raise RecipeError(
            f"{where}: format '{cfg.format}' needs column(s) {', '.join(missing)}, found {', '.join(raw.column_names)}. "
            f"Pick the dataset config that matches the file, or dataset=hub with dataset.columns.<field>= mappings."
        )
    rows = [converted for converted in map(convert, raw) if converted is not None]
    if len(rows) < len(raw):
        log.warning("%s: skipped %d of %d rows that do not convert", where, len(raw) - len(rows), len(raw))
    return rows


def _convert_standard(raw: Dataset, cfg: DictConfig, where: str) -> list[dict]:
    """Bad rows of someone else's dataset are skipped and counted; more than max_dropped_fraction is an error
    (a wrong column mapping fails every row)."""
    columns = dict(cfg.get("columns") or {})
    convert = standard_converter(raw.column_names, columns, where)
    rows, problems = [], []
    for number, record in enumerate(raw, 1):
        try:
            rows.append(convert(record, f"{where}, row {number}"))
        except RecipeError as exc:
            problems.append(str(exc))
    if problems:
        max_fraction = cfg.get("max_dropped_fraction", 0.1)
        if len(problems) > max_fraction * len(raw):
            raise RecipeError(
                f"{where}: {len(problems)} of {len(raw)} rows cannot be used, more than dataset.max_dropped_fraction="
                f"{max_fraction}. The first: {'; '.join(problems[:3])}"
            )
        log.warning("%s: skipped %d of %d rows that cannot be used (%s)", where, len(problems), len(raw), problems[0])
    return rows
