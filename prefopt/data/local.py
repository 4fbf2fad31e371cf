"""Your own data (`dataset=local`): JSONL, CSV or Parquet files, a column mapping, checks row by row.

Paired rows need prompt/chosen/rejected, unpaired (KTO) rows prompt/completion/label, SFT rows prompt/completion or
one `messages` conversation (its last assistant turn is the completion), under any column names
(`dataset.columns.chosen=good`). A field is a plain string or a list of {"role", "content"} messages (in CSV,
a JSON-encoded list). Every problem names the file, the line (row for Parquet/JSON) and the field.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
from collections.abc import Iterator, Mapping
from pathlib import Path

from datasets import Dataset
from omegaconf import DictConfig

from prefopt.data.checks import drop_identical, is_messages
from prefopt.errors import RecipeError

log = logging.getLogger(__name__)

PAIRED_FIELDS = ("prompt", "chosen", "rejected")
UNPAIRED_FIELDS = ("prompt", "completion", "label")
SFT_FIELDS = ("prompt", "completion")
MESSAGES_FIELDS = ("messages",)  # SFT rows as one conversation, split into prompt and completion while reading
FIELDS = (PAIRED_FIELDS, UNPAIRED_FIELDS, SFT_FIELDS, MESSAGES_FIELDS)  # the first row's columns pick, in this order
ROLES = ("system", "user", "assistant", "tool")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def load_splits(dataset_cfg: DictConfig) -> tuple[Dataset, Dataset]:
    """(train, eval) from dataset.path and dataset.eval_path, or eval_fraction of path's prompts held out."""
    if not dataset_cfg.get("path"):
        raise RecipeError(
            "dataset=local needs dataset.path=/path/to/pairs.jsonl (a .jsonl, .json, .csv or .parquet file, or a folder of them)."
        )
    columns = dataset_cfg.get("columns") or {}
    max_dropped = dataset_cfg.get("max_dropped_fraction", 0.1)
    train = read_pairs(dataset_cfg.path, columns, max_dropped)
    if dataset_cfg.get("eval_path"):
        test = read_pairs(dataset_cfg.eval_path, columns, max_dropped)
        if _kind(test) != _kind(train):
            raise RecipeError(
                f"dataset.path={dataset_cfg.path} holds {_kind(train)} rows but dataset.eval_path={dataset_cfg.eval_path} "
                f"holds {_kind(test)} rows: both must have the same columns."
            )
    else:
        train, test = hold_out(
            train, dataset_cfg.get("eval_fraction"), dataset_cfg.get("split_seed", 0), str(dataset_cfg.path)
        )
    train, test = as_one_format(train, test)
    return Dataset.from_list(train), Dataset.from_list(test)


def _kind(rows: list[dict]) -> str:
    return _kind_of(tuple(rows[0]))


def _kind_of(fields: tuple[str, ...]) -> str:
    return "paired" if "chosen" in fields else "unpaired" if "label" in fields else "sft"


def read_pairs(path: str | Path, columns: Mapping[str, str], max_dropped_fraction: float = 0.1) -> list[dict]:
    """Checked rows in our field names from a file or folder; identical chosen/rejected pairs dropped (counted)."""
    files = data_files(path)
    rows, where = [], []
    fields = None
    for file in files:
        records = read_records(file)
        first = next(records, None)
        if first is None:
            continue
        file_fields = _fields_of(first[1], file, columns)
        if fields and _kind_of(file_fields) != _kind_of(fields):  # SFT files may mix prompt/completion and messages
            raise RecipeError(
                f"{file}: holds {_kind_of(file_fields)} rows, the files before it {_kind_of(fields)} rows."
            )
        fields = file_fields
        for location, record in [first, *records]:
            rows.append(convert_record(record, fields, columns, location))
            where.append(location)
    if not rows:
        raise RecipeError(f"{path}: no rows (an empty file, or a folder of empty files).")
    if fields == PAIRED_FIELDS:
        rows = drop_identical(rows, str(path), max_dropped_fraction, where)
    return rows


def data_files(path: str | Path) -> list[Path]:
    """The file itself, or a folder's data files (sorted by name); everything else is an error that says why."""
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix not in READERS:
            raise RecipeError(f"{path}: cannot read '{path.suffix}' files; use .jsonl, .json, .csv or .parquet.")
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in READERS)
        if not files:
            raise RecipeError(f"{path}: the folder holds no .jsonl, .json, .csv or .parquet file.")
        return files
    raise RecipeError(f"{path}: no such file or folder (check dataset.path / dataset.eval_path).")


def _fields_of(record: dict, file: Path, columns: Mapping[str, str]) -> tuple[str, ...]:
    """Paired, unpaired or SFT, decided by which mapped columns the first row has."""
    for fields in FIELDS:
        if all(columns.get(field, field) in record for field in fields):
            return fields
    wanted = lambda fields: ", ".join(columns.get(f, f) for f in fields)  # noqa: E731
    raise RecipeError(
        f"{file}: missing column(s): needs {wanted(PAIRED_FIELDS)} (paired), {wanted(UNPAIRED_FIELDS)} (unpaired, "
        f"KTO), or {wanted(SFT_FIELDS)} or {wanted(MESSAGES_FIELDS)} (SFT); found {', '.join(map(str, record)) or 'none'}. "
        f"Map your column names with e.g. dataset.columns.prompt=question dataset.columns.chosen=good "
        f"dataset.columns.rejected=bad (SFT: dataset.columns.completion=answer or dataset.columns.messages=conversation)."
    )


def convert_record(record: dict, fields: tuple[str, ...], columns: Mapping[str, str], where: str) -> dict:
    """One raw record -> {prompt, chosen, rejected}, {prompt, completion, label} or {prompt, completion} (SFT), or a
    RecipeError naming the field."""
    row = {}
    for field in fields:
        column = columns.get(field, field)
        if column not in record:
            raise RecipeError(
                f"{where}: column '{column}' (field '{field}') is missing from this row; every row needs the columns "
                f"the first row has ({', '.join(columns.get(f, f) for f in fields)})."
            )
        named = f"'{field}'" + (f" (column '{column}')" if column != field else "")
        if fields == MESSAGES_FIELDS:
            return messages_row(record[column], where, named)
        if field == "label":
            row[field] = _label(record[column], where, named)
        else:
            row[field] = check_text(record[column], where, named, is_completion=field != "prompt")
    return row


def check_text(value, where: str, named: str, is_completion: bool) -> str | list[dict]:
    if isinstance(value, str) and value.lstrip().startswith("[{"):
        try:  # a message list stored as JSON text (CSV cells are always text)
            parsed = json.loads(value)
            value = parsed if isinstance(parsed, list) else value
        except json.JSONDecodeError:
            pass
    if value is None:
        raise RecipeError(f"{where}: {named} is missing (null): fill it in, or remove the row.")
    if isinstance(value, str):
        if not value.strip():
            raise RecipeError(f"{where}: {named} is empty: fill it in, or remove the row.")
        return value
    if isinstance(value, list):
        return _messages(value, where, named, is_completion)
    raise RecipeError(
        f'{where}: {named} must be a string or a list of {{"role", "content"}} messages, got {type(value).__name__} ({value!r:.40}).'
    )


def _messages(value: list, where: str, named: str, is_completion: bool) -> list[dict]:
    if not value:
        raise RecipeError(f"{where}: {named} is an empty message list.")
    messages = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise RecipeError(
                f'{where}: {named} message {i} must be a {{"role", "content"}} object, got {message!r:.60}.'
            )
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise RecipeError(f"{where}: {named} message {i} has role {role!r}; use one of {', '.join(ROLES)}.")
        if not isinstance(content, str) or not content.strip():
            raise RecipeError(f"{where}: {named} message {i} ({role}) has empty or non-string content.")
        messages.append({"role": role, "content": content})
    last = messages[-1]["role"]
    if is_completion and last != "assistant":
        raise RecipeError(f"{where}: {named} must end with an assistant message (the answer), not {last!r}.")
    if not is_completion and last == "assistant":
        raise RecipeError(
            f"{where}: {named} ends with an assistant message; the answer belongs in chosen/rejected/completion."
        )
    return messages


def messages_row(value, where: str, named: str = "'messages'") -> dict:
    """One conversation -> an SFT row: the last (assistant) turn is the completion, every turn before it the prompt."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:  # a message list stored as JSON text (CSV cells are always text)
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    shape = 'a list of {"role", "content"} messages ending with the assistant\'s answer'
    if value is None:
        raise RecipeError(f"{where}: {named} is missing (null); give the conversation as {shape}.")
    if not isinstance(value, list):
        raise RecipeError(f"{where}: {named} must be {shape}, got {type(value).__name__} ({value!r:.40}).")
    if not value:
        raise RecipeError(f"{where}: {named} is an empty list; give the conversation as {shape}.")
    roles = [message.get("role") if isinstance(message, dict) else None for message in value]
    if "assistant" not in roles:
        raise RecipeError(
            f"{where}: {named} has no assistant turn (roles {', '.join(map(str, roles))}): SFT trains on the last "
            f'assistant message, so add the answer as {{"role": "assistant", "content": ...}}.'
        )
    if roles[-1] != "assistant":
        raise RecipeError(
            f"{where}: {named} ends with a {roles[-1]!r} turn after the last assistant turn: the completion is the "
            f"last assistant message, so end the conversation with it (drop the turns after it)."
        )
    messages = check_text(value, where, named, is_completion=True)
    if len(messages) == 1:
        raise RecipeError(
            f"{where}: {named} holds only the assistant's answer: add the turn(s) it answers (a user message) "
            f"before it, which become the prompt."
        )
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def _label(value, where: str, named: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise RecipeError(f"{where}: {named} must be true/false (or 1/0), got {value!r:.40}.")


def hold_out(rows: list[dict], fraction: float | None, seed: int, source: str) -> tuple[list[dict], list[dict]]:
    """Split by prompt, not by row, so no held-out prompt is ever trained on."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise RecipeError(
            f"dataset.eval_fraction={fraction}: must be between 0 and 1 when there is no separate eval split "
            f"(dataset.eval_path for files, dataset.eval_split for Hub data): the launcher evaluates on held-out rows."
        )
    keys = list(dict.fromkeys(prompt_key(row["prompt"]) for row in rows))
    if len(keys) < 2:
        raise RecipeError(
            f"{source}: all rows share one prompt, so none can be held out; give a separate eval split "
            f"(dataset.eval_path= for files, dataset.eval_split= for Hub data)."
        )
    random.Random(seed).shuffle(keys)
    held_out = set(keys[: min(len(keys) - 1, max(1, round(len(keys) * fraction)))])
    train = [row for row in rows if prompt_key(row["prompt"]) not in held_out]
    test = [row for row in rows if prompt_key(row["prompt"]) in held_out]
    return train, test


def prompt_key(prompt: str | list[dict]) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def eval_prompts_in_train(train_prompts, eval_prompts) -> int:
    """How many eval rows have a prompt that some train row has too (the eval then measures memorization)."""
    seen = {prompt_key(p) for p in train_prompts}
    return sum(prompt_key(p) in seen for p in eval_prompts)


def as_one_format(*splits: list[dict]) -> list[list[dict]]:
    """All plain text stays plain; if any field anywhere is a message list, every string becomes a message.

    A column cannot mix strings and lists (Arrow), and TRL renders a row through the chat template only when it
    is conversational, so a dataset is one or the other.
    """
    if not any(is_messages(value) for rows in splits for row in rows for value in row.values()):
        return list(splits)

    def wrap(field: str, value):
        if isinstance(value, str) and field != "label":
            return [{"role": "user" if field == "prompt" else "assistant", "content": value}]
        return value

    return [[{field: wrap(field, value) for field, value in row.items()} for row in rows] for rows in splits]


# --- readers: (location, record) pairs, where location reads "<file>, line N" or "<file>, row N" ---------------


def _decode(data: bytes, file: Path, line_offset: int = 0) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = line_offset + data[: exc.start].count(b"\n") + 1
        raise RecipeError(
            f"{file}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}). Re-save the file as UTF-8, "
            f"e.g. `iconv -f latin1 -t utf-8 {file.name} > fixed{file.suffix}`."
        ) from None


def read_jsonl(file: Path) -> Iterator[tuple[str, dict]]:
    with open(file, "rb") as f:
        for number, raw in enumerate(f, 1):
            line = _decode(raw, file, number - 1).lstrip("\ufeff").strip()
            if not line:
                continue
            yield f"{file}, line {number}", _json_object(line, f"{file}, line {number}")


def read_json(file: Path) -> Iterator[tuple[str, dict]]:
    text = _decode(file.read_bytes(), file).lstrip("\ufeff")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # JSON lines saved as .json
            yield from read_jsonl(file)
            return
        raise RecipeError(f"{file}, line {exc.lineno}: not valid JSON ({exc.msg}).") from None
    if not isinstance(data, list):
        raise RecipeError(
            f"{file}: expected a JSON list of row objects (or one object per line), got {type(data).__name__}."
        )
    for number, record in enumerate(data, 1):
        if not isinstance(record, dict):
            raise RecipeError(f"{file}, row {number}: expected a JSON object, got {type(record).__name__}.")
        yield f"{file}, row {number}", record


def _json_object(line: str, where: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecipeError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
    if not isinstance(record, dict):
        raise RecipeError(f"{where}: expected a JSON object per line, got {type(record).__name__}.")
    return record


def read_csv(file: Path) -> Iterator[tuple[str, dict]]:
    reader = csv.DictReader(io.StringIO(_decode(file.read_bytes(), file).lstrip("\ufeff"), newline=""))
    for record in reader:
        yield f"{file}, line {reader.line_num}", record


def read_parquet(file: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        records = pq.read_table(file).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise RecipeError(f"{file}: not a readable Parquet file ({exc}).") from None
    for number, record in enumerate(records, 1):
        yield f"{file}, row {number}", record


def read_records(file: Path) -> Iterator[tuple[str, dict]]:
    return READERS[file.suffix](file)


READERS = {".jsonl": read_jsonl, ".json": read_json, ".csv": read_csv, ".parquet": read_parquet}
