"""Training data for every method: load what `conf/dataset/*.yaml` names, convert, validate, shape for the method.

Sources: the built-in task (builtin.py), Hub datasets or local copies of them (hub.py), your own files (local.py),
weighted mixtures of any of these (mixture.py). Checks that need the tokenizer (checks.py) and the pre-flight
report (report.py) run on what this returns.

`load_splits` returns train/eval `datasets.Dataset`s holding only the columns TRL reads: paired rows
(prompt, chosen, rejected) for DPO/IPO/ORPO, unpaired rows (prompt, completion, label) for KTO, SFT rows (prompt,
completion; a pair's completion is its chosen answer, see sft.py) for SFT. A source without a
separate eval split holds out a fraction of its prompts; an explicit eval split sharing prompts with train is
warned about unless `dataset.allow_eval_overlap=true`.
"""

from __future__ import annotations

from datasets import Dataset
from omegaconf import DictConfig

from prefopt.data.mixture import load_mixture
from prefopt.data.sources import PAIRED_COLUMNS, UNPAIRED_COLUMNS, cut, load_source, to_unpaired, warn_eval_overlap


def load_splits(dataset_cfg: DictConfig, data_format: str) -> tuple[Dataset, Dataset]:
    """(train, eval) in `data_format` ("paired", "unpaired" or "sft"), cut to max_*_samples."""
    if dataset_cfg.format == "mix":
        mixture = load_mixture(dataset_cfg, data_format)
        return mixture.train, mixture.eval
    train, test = load_source(dataset_cfg, data_format)
    warn_eval_overlap(train, test, dataset_cfg, f"dataset '{dataset_cfg.name}'")
    return cut(train, dataset_cfg.get("max_train_samples")), cut(test, dataset_cfg.get("max_eval_samples"))


__all__ = ["PAIRED_COLUMNS", "UNPAIRED_COLUMNS", "load_source", "load_splits", "to_unpaired"]
