"""One dataset source (built-in task, Hub format, local files) loaded and shaped for the method; prefopt.data's
load_splits and prefopt.data.mixture's parts both read sources through here."""

from __future__ import annotations

import logging

from datasets import Dataset
from omegaconf import DictConfig

from prefopt.data import builtin, hub, local, sft
from prefopt.data.local import eval_prompts_in_train
from prefopt.errors import RecipeError

log = logging.getLogger(__name__)

PAIRED_COLUMNS = ["prompt", "chosen", "rejected"]
UNPAIRED_COLUMNS = ["prompt", "completion", "label"]
FORMATS = ("builtin", "local", "hub", *hub.CONVERTERS)


def load_source(dataset_cfg: DictConfig, data_format: str) -> tuple[Dataset, Dataset]:
    """One source's (train, eval), shaped for the method, before any max_*_samples cut."""
    if dataset_cfg.format == "builtin":
        pairs = builtin.build_pairs(
            dataset_cfg.num_train, dataset_cfg.num_eval, seed=dataset_cfg.seed, eval_split=dataset_cfg.eval_split
        )
        train, test = (Dataset.from_list(pairs[split]).select_columns(PAIRED_COLUMNS) for split in ("train", "test"))
    elif dataset_cfg.format == "local":
        train, test = local.load_splits(dataset_cfg)
    elif dataset_cfg.format in FORMATS:
        train, test = (Dataset.from_list(rows) for rows in hub.load_splits(dataset_cfg))
    else:
        raise RecipeError(
            f"dataset.format={dataset_cfg.format!r} (dataset '{dataset_cfg.name}'): use one of "
            f"{', '.join(FORMATS)} or mix (the configs in conf/dataset/)."
        )
    return tuple(_shape(ds, data_format, dataset_cfg.name) for ds in (train, test))


def warn_eval_overlap(train: Dataset, test: Dataset, dataset_cfg: DictConfig, label: str) -> int:
    """Warn when eval rows share prompts with train (an explicit eval split can); returns the count."""
    shared = eval_prompts_in_train(train["prompt"], test["prompt"]) if len(test) else 0
    if shared and not dataset_cfg.get("allow_eval_overlap", False):
        log.warning(
            "%s: %d of %d eval rows have a prompt that is also in train, so the evaluation partly measures "
            "memorization. Use an eval split with other prompts (or none: dataset.eval_split=null for Hub data, no "
            "dataset.eval_path for files, and dataset.eval_fraction of the prompts are held out), or set "
            "dataset.allow_eval_overlap=true to keep them.",
            label,
            shared,
            len(test),
        )
    return shared


def cut(ds: Dataset, limit: int | None) -> Dataset:
    return ds.select(range(min(limit, len(ds)))) if limit else ds


def _shape(ds: Dataset, data_format: str, name: str) -> Dataset:
    if data_format == "sft":
        return sft.to_sft(ds, name)
    sft.refuse_for_preferences(ds, name, data_format)
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
