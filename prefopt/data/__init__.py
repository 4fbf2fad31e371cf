"""Preference data for every method: load what `conf/dataset/*.yaml` names, convert, validate, shape for the method.

Sources: the built-in task (builtin.py), Hub datasets or local copies of them (hub.py), your own files (local.py).
Checks that need the tokenizer (checks.py) and the pre-flight report (report.py) run on what this returns.

`load_splits` returns train/eval `datasets.Dataset`s holding only the columns TRL reads: paired rows
(prompt, chosen, rejected) for DPO/IPO/ORPO, unpaired rows (prompt, completion, label) for KTO.
"""

from __future__ import annotations

import logging
from pathlib import Path

from datasets import Dataset
from omegaconf import DictConfig

from prefopt.data import builtin, local
from prefopt.data.checks import drop_identical
from prefopt.data.hub import CONVERTERS
from prefopt.errors import RecipeError

log = logging.getLogger(__name__)

PAIRED_COLUMNS = ["prompt", "chosen", "rejected"]
UNPAIRED_COLUMNS = ["prompt", "completion", "label"]
_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".gz": "json", ".csv": "csv", ".parquet": "parquet"}


def load_splits(dataset_cfg: DictConfig, data_format: str) -> tuple[Dataset, Dataset]:
    """(train, eval) in `data_format` ("paired" or "unpaired"), cut to max_*_samples."""
    if dataset_cfg.format == "builtin":
        pairs = builtin.build_pairs(dataset_cfg.num_train, dataset_cfg.num_eval, seed=dataset_cfg.seed)
        train, test = (Dataset.from_list(pairs[split]).select_columns(PAIRED_COLUMNS) for split in ("train", "test"))
    elif dataset_cfg.format == "local":
        train, test = local.load_splits(dataset_cfg)
    else:
        train = _load_hub_split(dataset_cfg, dataset_cfg.train_split, dataset_cfg.max_train_samples)
        test = _load_hub_split(dataset_cfg, dataset_cfg.eval_split, dataset_cfg.max_eval_samples)
    train, test = (_shape(ds, data_format, dataset_cfg.name) for ds in (train, test))
    return _cut(train, dataset_cfg.max_train_samples), _cut(test, dataset_cfg.max_eval_samples)


def _cut(ds: Dataset, limit: int | None) -> Dataset:
    return ds.select(range(min(limit, len(ds)))) if limit else ds


def _shape(ds: Dataset, data_format: str, name: str) -> Dataset:
    is_paired = set(PAIRED_COLUMNS) <= set(ds.column_names)
    if data_format == "paired":
        if not is_paired:
            raise RecipeError(
                f"dataset '{name}' is unpaired (columns {ds.column_names}) but this method trains on pairs "
                f"(prompt, chosen, rejected). Use method=kto for unpaired data."
            )
        return ds.select_columns(PAIRED_COLUMNS)
    return to_unpaired(ds) if is_paired else ds.select_columns(UNPAIRED_COLUMNS)


def to_unpaired(pairs: Dataset) -> Dataset:
    """Each pair becomes a desirable (chosen, True) and an undesirable (rejected, False) row, interleaved."""
    rows = []
    for row in pairs:
        rows.append({"prompt": row["prompt"], "completion": row["chosen"], "label": True})
        rows.append({"prompt": row["prompt"], "completion": row["rejected"], "label": False})
    return Dataset.from_list(rows)


def _load_hub_split(dataset_cfg: DictConfig, split: str, limit: int | None) -> Dataset:
    """One split from the Hub id or a local copy in the Hub's layout (dataset.path=...), converted."""
    import datasets

    source = str(dataset_cfg.path)
    local = Path(source).expanduser()
    try:
        if local.is_file():
            builder = _FILE_BUILDERS.get(local.suffix)
            if builder is None:
                raise RecipeError(
                    f"dataset '{dataset_cfg.name}': cannot read {local} (use .jsonl, .json, .csv or .parquet)"
                )
            raw = datasets.load_dataset(builder, data_files={split: str(local)}, split=split)
        else:
            raw = datasets.load_dataset(
                str(local) if local.exists() else source, data_dir=dataset_cfg.get("data_dir"), split=split
            )
    except (ValueError, FileNotFoundError, ConnectionError, OSError) as exc:
        if isinstance(exc, RecipeError):
            raise
        raise RecipeError(
            f"dataset '{dataset_cfg.name}': could not load split '{split}' from {source} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Offline, point dataset.path at a local copy in the Hub's format."
        ) from None
    if limit:  # convert no more rows than we will use
        raw = raw.select(range(min(len(raw), limit * 2)))
    convert, needed = CONVERTERS[dataset_cfg.format]
    missing = [column for column in needed if column not in raw.column_names]
    if missing:
        raise RecipeError(
            f"dataset '{dataset_cfg.name}' ({source}, split '{split}'): format '{dataset_cfg.format}' needs column(s) "
            f"{', '.join(missing)}, found {', '.join(raw.column_names)}. Pick the dataset config that matches the file."
        )
    rows = [converted for converted in map(convert, raw) if converted is not None]
    skipped = len(raw) - len(rows)
    if skipped:
        log.warning(
            "dataset '%s' split '%s': skipped %d of %d rows that do not convert",
            dataset_cfg.name,
            split,
            skipped,
            len(raw),
        )
    if not rows:
        raise RecipeError(f"dataset '{dataset_cfg.name}' split '{split}' from {source}: no usable rows.")
    if "chosen" in rows[0]:
        where = f"dataset '{dataset_cfg.name}' ({source}, split '{split}')"
        rows = drop_identical(rows, where, dataset_cfg.get("max_dropped_fraction", 0.1))
    return Dataset.from_list(rows)
