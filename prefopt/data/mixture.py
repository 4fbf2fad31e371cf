"""Weighted mixtures of datasets (`dataset=mix`): any dataset configs as sources, by fraction or row count.

Each entry of `dataset.sources` is a dataset config: `format:` (or `config:`, a file of conf/dataset/) picks the
defaults, the entry's own keys override them, and `fraction:` or `rows:` says how much of its training data the
mixture takes. Fractions are shares of the mixture's training rows and sum to 1; `rows:` is a count (no weight: all
its rows). Rows count what the method trains on (for KTO each pair is two rows). Eval is the union of each source's
own eval part (its eval split, or its held-out prompts), whole. One pass drops rows repeated across sources (same
prompt, chosen and rejected; or prompt, completion and label), and train rows whose prompt another source holds out.
Sampling and order are seeded by `dataset.seed`.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import dataclass, field
from numbers import Number

from datasets import Dataset
from omegaconf import DictConfig, OmegaConf

from prefopt.config import CONF
from prefopt.data.local import as_one_format, prompt_key
from prefopt.data.sources import cut, load_source, warn_eval_overlap
from prefopt.errors import RecipeError

log = logging.getLogger(__name__)

WEIGHT_KEYS = ("fraction", "rows")
_ENTRY_KEYS = ("name", "format", "config", *WEIGHT_KEYS)


@dataclass
class Part:
    """One source's share of the mixture."""

    index: int
    name: str
    format: str
    available: dict[str, int]  # rows the source gave, per split, before the mixture
    train: list[dict] = field(default_factory=list)  # its rows in the mixture
    eval: list[dict] = field(default_factory=list)
    duplicates: int = 0  # its train + eval rows dropped as repeats of an earlier row
    held_out_elsewhere: int = 0  # its train rows dropped because another source evaluates on their prompt

    @property
    def label(self) -> str:
        return f"dataset.sources[{self.index}] ({self.name})"


@dataclass
class Mixture:
    train: Dataset
    eval: Dataset
    parts: list[Part]


def source_configs(mix_cfg: DictConfig) -> list[DictConfig]:
    """Each entry over its dataset config's defaults; every mistake in the list found before anything loads."""
    entries = mix_cfg.get("sources")
    if not entries or not OmegaConf.is_list(entries):
        raise RecipeError(
            "dataset=mix needs dataset.sources, a list of dataset configs, e.g. "
            "'dataset.sources=[{format:builtin,fraction:0.5},{format:local,path:pairs.jsonl,fraction:0.5}]'."
        )
    configs = []
    for i, entry in enumerate(entries):
        where = f"dataset.sources[{i}]"
        if not isinstance(entry, DictConfig):
            raise RecipeError(f"{where} is {entry!r}: each source is a mapping such as {{format: local, path: ...}}.")
        config = entry.get("config") or entry.get("format")
        if not config:
            raise RecipeError(f"{where}: give format: (builtin, hh-rlhf, ultrafeedback, kto-mix, local, hub).")
        if config == "mix":
            raise RecipeError(f"{where}: a mixture cannot be a source; list its sources here instead.")
        defaults_file = CONF / "dataset" / f"{config}.yaml"
        if not defaults_file.is_file():
            known = ", ".join(sorted(p.stem for p in defaults_file.parent.glob("*.yaml") if p.stem != "mix"))
            raise RecipeError(
                f"{where}: no dataset config '{config}' (conf/dataset/{config}.yaml); use one of {known}."
            )
        defaults = OmegaConf.load(defaults_file)
        unknown = [key for key in entry if key not in defaults and key not in _ENTRY_KEYS]
        if unknown:
            raise RecipeError(
                f"{where} ({config}): unknown key(s) {', '.join(map(str, unknown))}; its keys are "
                f"{', '.join(sorted({*map(str, defaults), *_ENTRY_KEYS}))}."
            )
        merged = OmegaConf.merge(defaults, {k: v for k, v in entry.items() if k != "config"})
        if "allow_eval_overlap" not in entry:
            merged.allow_eval_overlap = bool(mix_cfg.get("allow_eval_overlap", False))
        _check_weight(merged, where)
        configs.append(merged)
    fractions = [c.get("fraction") for c in configs]
    given = [f is not None for f in fractions]
    if any(given) and not all(given):
        missing = [i for i, g in enumerate(given) if not g]
        raise RecipeError(
            f"dataset.sources: fractions are shares of the mixture, so every source needs one; "
            f"{', '.join(f'dataset.sources[{i}]' for i in missing)} has none (or give every source rows: instead)."
        )
    if all(given) and not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise RecipeError(
            f"dataset.sources: the fractions {', '.join(map(str, fractions))} sum to {sum(fractions):g}, not 1: "
            f"they are each source's share of the mixture's training rows."
        )
    return configs


def _check_weight(cfg: DictConfig, where: str) -> None:
    fraction, rows = cfg.get("fraction"), cfg.get("rows")
    if fraction is not None and rows is not None:
        raise RecipeError(f"{where}: give fraction: or rows:, not both (fraction={fraction}, rows={rows}).")
    if fraction is not None and (not _is_number(fraction) or not 0 <= fraction <= 1):
        raise RecipeError(f"{where}: fraction={fraction!r} must be a number from 0 to 1 (its share of the mixture).")
    if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool) or rows < 1):
        raise RecipeError(f"{where}: rows={rows!r} must be a whole number >= 1.")


def _is_number(value) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def load_mixture(mix_cfg: DictConfig, data_format: str) -> Mixture:

    configs = source_configs(mix_cfg)
    loaded, parts = [], []
    for i, cfg in enumerate(configs):
        part = Part(i, str(cfg.get("name") or cfg.format), str(cfg.format), {})
        try:
            train, test = load_source(cfg, data_format)
        except Exception as exc:  # any failure: say which source it was
            detail = str(exc) if isinstance(exc, RecipeError) else f"{type(exc).__name__}: {exc}"
            raise RecipeError(f"{part.label}: {detail}") from exc
        warn_eval_overlap(train, test, cfg, part.label)
        train, test = cut(train, cfg.get("max_train_samples")), cut(test, cfg.get("max_eval_samples"))
        part.available = {"train": len(train), "eval": len(test)}
        loaded.append((train.to_list(), test.to_list()))
        parts.append(part)
    # Arrow cannot hold text in a column beside message lists: one format for every source.
    unified = as_one_format(*(rows for pair in loaded for rows in pair))
    trains, evals = unified[0::2], unified[1::2]

    if not mix_cfg.get("allow_eval_overlap", False):
        trains = [_drop_held_out_elsewhere(i, trains, evals, parts[i]) for i in range(len(parts))]
    seen_train, seen_eval = set(), set()
    trains = [_unique(rows, seen_train, part) for rows, part in zip(trains, parts)]
    evals = [_unique(rows, seen_eval, part) for rows, part in zip(evals, parts)]

    counts = _counts(configs, [len(rows) for rows in trains], mix_cfg.get("max_train_samples"), parts)
    seed = mix_cfg.get("seed", 0)
    for part, rows, test, n in zip(parts, trains, evals, counts):
        rng = random.Random(seed * 1_000_003 + part.index)
        part.train = [rows[j] for j in sorted(rng.sample(range(len(rows)), n))]
        part.eval = test
    train = [row for part in parts for row in part.train]
    test = [row for part in parts for row in part.eval]
    if not train or not test:
        raise RecipeError(f"dataset '{mix_cfg.name}': the mixture has no {'train' if not train else 'eval'} rows.")
    order = random.Random(seed)
    order.shuffle(train)
    order.shuffle(test)
    for part in parts:
        log.info(
            "mixture '%s': %s gives %d train rows (%.1f%%) and %d eval rows",
            mix_cfg.name,
            part.label,
            len(part.train),
            100 * len(part.train) / len(train),
            len(part.eval),
        )
    train_ds, eval_ds = Dataset.from_list(train), Dataset.from_list(test)
    return Mixture(train_ds, cut(eval_ds, mix_cfg.get("max_eval_samples")), parts)


def _drop_held_out_elsewhere(i: int, trains: list[list[dict]], evals: list[list[dict]], part: Part) -> list[dict]:
    """A prompt one source evaluates on is not trained on from another (each source's own split is its own)."""
    elsewhere = {prompt_key(row["prompt"]) for j, rows in enumerate(evals) if j != i for row in rows}
    kept = [row for row in trains[i] if prompt_key(row["prompt"]) not in elsewhere]
    part.held_out_elsewhere = len(trains[i]) - len(kept)
    return kept


def _unique(rows: list[dict], seen: set[str], part: Part) -> list[dict]:
    kept = []
    for row in rows:
        key = json.dumps(row, sort_keys=True)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    part.duplicates += len(rows) - len(kept)
    return kept


def _counts(configs: list[DictConfig], available: list[int], total: int | None, parts: list[Part]) -> list[int]:
    """Training rows to take per source: shares of `total` (or of the largest total the sources allow), or rows:."""
    fractions = [cfg.get("fraction") for cfg in configs]
    if fractions[0] is None:
        counts = [cfg.get("rows") or n for cfg, n in zip(configs, available)]
        for part, n, want in zip(parts, available, counts):
            if want > n:
                raise RecipeError(f"{part.label}: rows={want}, but it has {n} training rows (after dropping repeats).")
        return counts
    if total is None:  # as many rows as the smallest source allows at these shares
        total = min(math.floor(n / f + 1e-9) for n, f in zip(available, fractions) if f > 0)
    exact = [f * total for f in fractions]
    counts = [math.floor(x) for x in exact]
    # Largest remainders get the rows rounding left over, so the counts sum to the total.
    for j in sorted(range(len(exact)), key=lambda j: counts[j] - exact[j])[: total - sum(counts)]:
        counts[j] += 1
    for part, n, want, f in zip(parts, available, counts, fractions):
        if want > n:
            raise RecipeError(
                f"{part.label}: fraction={f} of dataset.max_train_samples={total} is {want} rows, but it has {n} "
                f"training rows. Lower dataset.max_train_samples, or give the sources rows: instead."
            )
    return counts
