"""The pre-flight data report: what the trainer will see, in tokens, before any model weights load.

Used by scripts/check_data.py (full table, or --json) and by scripts/train.py (a short summary in the log).
Token lengths follow TRL's tokenization (see prefopt/data/checks.py): prompts include the chat template's
markers and generation prompt, completions their end-of-turn tokens (or the EOS appended to plain text).
Percentiles are nearest-rank: p50 of [1, 2, 3, 4] is 2, of [1, 2, 3, 4, 5] is 3.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from prefopt.data.checks import boundaries, completion_fields, is_messages, measure
from prefopt.data.local import eval_prompts_in_train, prompt_key
from prefopt.reports import format_cell

log = logging.getLogger(__name__)

BOUNDARY_MARK = "[[completion starts here]]"
PERCENTILES = (50, 90, 99)


def percentile(values: Sequence[int], q: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def length_stats(values: Sequence[int]) -> dict:
    stats = {f"p{q}": percentile(values, q) for q in PERCENTILES}
    stats["max"] = max(values) if values else None
    stats["mean"] = round(sum(values) / len(values), 2) if values else None
    return stats


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def split_report(ds: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int | None) -> dict:
    """Row count, token-length percentiles, truncation, boundary mismatches, length bias and duplicates of one split."""
    report: dict = {"rows": len(ds)}
    if len(ds) == 0:
        return report
    lengths = measure(ds, tokenizer)
    sides = lengths.completions
    report["tokens"] = {"prompt": length_stats(lengths.prompt), **{name: length_stats(v) for name, v in sides.items()}}
    longest = [max(side[i] for side in sides.values()) for i in range(len(ds))]
    if max_length is not None:
        report["truncated"] = sum(p + c > max_length for p, c in zip(lengths.prompt, longest))
        report["emptied"] = sum(p >= max_length for p in lengths.prompt)
    report["boundary_mismatches"] = len(lengths.mismatched)
    if "chosen" in sides:
        gaps = [c - r for c, r in zip(sides["chosen"], sides["rejected"])]
        report["length_gap"] = {
            "mean_chosen_minus_rejected": _mean(gaps),
            "chosen_longer_fraction": round(sum(g > 0 for g in gaps) / len(gaps), 4),
        }
    elif "label" in ds.column_names:  # SFT rows have one completion and no label: nothing to compare
        labels = ds["label"]
        report["labels"] = {
            "desirable": sum(labels),
            "undesirable": len(labels) - sum(labels),
            "mean_desirable_tokens": _mean([n for n, good in zip(sides["completion"], labels) if good]),
            "mean_undesirable_tokens": _mean([n for n, good in zip(sides["completion"], labels) if not good]),
        }
    rows = [json.dumps(row, sort_keys=True) for row in ds]
    prompts = [prompt_key(p) for p in ds["prompt"]]
    report["duplicate_rows"] = len(rows) - len(set(rows))
    report["duplicate_prompts"] = len(prompts) - len(set(prompts))
    return report


def rendered_example(row: dict, tokenizer: PreTrainedTokenizerBase) -> str:
    """The row as the model sees it, with BOUNDARY_MARK where the trained completion begins."""
    side = completion_fields(list(row))[0]
    boundary = boundaries(tokenizer, [row["prompt"]], [row[side]])[0]
    shared = boundary.shared
    return tokenizer.decode(boundary.full_ids[:shared]) + BOUNDARY_MARK + tokenizer.decode(boundary.full_ids[shared:])


def data_report(
    train: Dataset,
    eval_: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int | None,
    max_rows: int | None = None,
) -> dict:
    """Everything check_data prints; `max_rows` measures only each split's first rows (the training log uses it)."""
    full_rows = {"train": len(train), "eval": len(eval_)}
    leaked = eval_prompts_in_train(train["prompt"], eval_["prompt"])
    if max_rows is not None:
        train, eval_ = (ds.select(range(min(max_rows, len(ds)))) for ds in (train, eval_))
    splits = {"train": split_report(train, tokenizer, max_length), "eval": split_report(eval_, tokenizer, max_length)}
    for name, rows in full_rows.items():
        splits[name]["rows"] = rows
        if max_rows is not None and rows > max_rows:
            splits[name]["rows_measured"] = max_rows
    first = train[0] if len(train) else None
    return {
        "format": data_format(train.column_names),
        "conversational": bool(first) and is_messages(first["prompt"]),
        "max_length": max_length,
        "splits": splits,
        "eval_prompts_in_train": leaked,
        "example": {"row": first, "rendered": rendered_example(first, tokenizer) if first else None},
    }


def data_format(column_names: Sequence[str]) -> str:
    """paired, unpaired (KTO) or sft: what the rows the method trains on hold."""
    return "paired" if "chosen" in column_names else "unpaired" if "label" in column_names else "sft"


def _fmt(value) -> str:
    return format_cell(value, ".2f")


def format_table(report: dict, title: str = "") -> str:
    """A readable table: token lengths per field, then truncation, boundary, bias and duplicates per split."""
    lines = [title] if title else []
    lines.append(
        f"{report['format']}, {'conversational (chat template)' if report['conversational'] else 'plain text'}, "
        f"train.max_length={report['max_length']}"
    )
    lines.append("")
    lines.append(
        f"{'split':<6} {'rows':>7}  {'tokens':<11}"
        + "".join(f"{name:>7}" for name in ("p50", "p90", "p99", "max", "mean"))
    )
    for split, data in report["splits"].items():
        rows = f"{data['rows']}" + ("*" if "rows_measured" in data else "")
        for i, (name, stats) in enumerate(data.get("tokens", {"-": {}}).items()):
            values = "".join(f"{_fmt(stats.get(k)):>7}" for k in ("p50", "p90", "p99", "max", "mean"))
            lines.append(f"{split if i == 0 else '':<6} {rows if i == 0 else '':>7}  {name:<11}{values}")
    measured = {data["rows_measured"] for data in report["splits"].values() if "rows_measured" in data}
    if measured:
        lines.append(f"* measured on the first {measured.pop()} rows")
    lines.append("")
    lines.append(f"{'split':<6} {'truncated':>10} {'emptied':>8} {'boundary':>9} {'dup rows':>9} {'dup prompts':>12}")
    for split, data in report["splits"].items():
        lines.append(
            f"{split:<6} {_fmt(data.get('truncated')):>10} {_fmt(data.get('emptied')):>8} {_fmt(data.get('boundary_mismatches')):>9}"
            f" {_fmt(data.get('duplicate_rows')):>9} {_fmt(data.get('duplicate_prompts')):>12}"
        )
    lines.append(
        "truncated: rows longer than train.max_length (cut); emptied: prompt alone fills it (dropped before training); "
        "boundary: prompt tokens not a prefix of prompt+completion"
    )
    lines.append("")
    for split, data in report["splits"].items():
        if "length_gap" in data:
            gap = data["length_gap"]
            lines.append(
                f"length bias ({split}): chosen longer in {gap['chosen_longer_fraction']:.1%} of pairs, "
                f"mean chosen - rejected = {gap['mean_chosen_minus_rejected']:+.2f} tokens"
            )
        elif "labels" in data:
            lab = data["labels"]
            lines.append(
                f"labels ({split}): {lab['desirable']} desirable ({_fmt(lab['mean_desirable_tokens'])} tokens on average), "
                f"{lab['undesirable']} undesirable ({_fmt(lab['mean_undesirable_tokens'])})"
            )
    lines.append(f"eval prompts also in train: {report['eval_prompts_in_train']}")
    if report.get("sources"):
        lines += [
            "",
            f"mixture of {len(report['sources'])} sources:",
            *format_sources(report["sources"], report["max_length"]),
        ]
    if report["example"]["rendered"] is not None:
        lines += [
            "",
            f"example (train row 0), the trained completion after {BOUNDARY_MARK}:",
            report["example"]["rendered"],
        ]
    return "\n".join(lines)


def _split_line(split: str, data: dict, max_length: int | None) -> str:
    if "tokens" not in data:
        return f"{split}: {data['rows']} rows"
    tokens = ", ".join(f"{name} {s['p50']}/{s['p99']}/{s['max']}" for name, s in data["tokens"].items())
    line = f"{split}: {data['rows']} rows; tokens p50/p99/max {tokens}"
    if "truncated" in data:
        line += f"; truncated {data['truncated']}, emptied {data['emptied']} at max_length {max_length}"
    line += f"; boundary mismatches {data['boundary_mismatches']}"
    if "length_gap" in data:
        line += f"; chosen longer in {data['length_gap']['chosen_longer_fraction']:.0%}"
    line += f"; duplicate prompts {data['duplicate_prompts']}"
    if "rows_measured" in data:
        line += f" (first {data['rows_measured']} rows measured)"
    return line


def short_summary(report: dict) -> list[str]:
    """One line per split for the training log."""
    lines = [_split_line(split, data, report["max_length"]) for split, data in report["splits"].items()]
    lines.append(f"eval prompts also in train: {report['eval_prompts_in_train']}")
    return lines


def sources_report(parts: Sequence, tokenizer: PreTrainedTokenizerBase, max_length: int | None) -> list[dict]:
    """Per source of a mixture (prefopt.data.mixture.Part): what it had, what the mixture took, and its splits."""
    total = sum(len(part.train) for part in parts) or 1
    found = []
    for part in parts:
        train, eval_ = Dataset.from_list(part.train), Dataset.from_list(part.eval)
        found.append(
            {
                "index": part.index,
                "name": part.name,
                "format": part.format,
                "available": part.available,
                "share": round(len(part.train) / total, 4),
                "duplicates_dropped": part.duplicates,
                "held_out_elsewhere_dropped": part.held_out_elsewhere,
                "splits": {
                    "train": split_report(train, tokenizer, max_length),
                    "eval": split_report(eval_, tokenizer, max_length),
                },
            }
        )
    return found


def format_sources(sources: list[dict], max_length: int | None) -> list[str]:
    lines = [
        f"{'source':<24} {'format':<13} {'had train/eval':>14} {'train':>7} {'share':>7} {'eval':>6} "
        f"{'repeats':>8} {'held out elsewhere':>19}"
    ]
    for source in sources:
        had = f"{source['available']['train']}/{source['available']['eval']}"
        label = f"[{source['index']}] {source['name']}"
        splits = source["splits"]
        lines.append(
            f"{label:<24} {source['format']:<13} {had:>14} "
            f"{splits['train']['rows']:>7} {source['share']:>7.1%} {splits['eval']['rows']:>6} "
            f"{source['duplicates_dropped']:>8} {source['held_out_elsewhere_dropped']:>19}"
        )
    lines.append(
        "repeats: its rows dropped as copies of an earlier row; held out elsewhere: its train rows dropped because "
        "another source evaluates on their prompt"
    )
    for source in sources:
        for split, data in source["splits"].items():
            lines.append(f"[{source['index']}] {source['name']} {_split_line(split, data, max_length)}")
    return lines


def log_summary(
    train: Dataset, eval_: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int | None, max_rows: int = 2000
) -> dict:
    """Log the short summary at the start of a run (the first `max_rows` rows of each split keep it quick)."""
    report = data_report(train, eval_, tokenizer, max_length, max_rows=max_rows)
    for line in short_summary(report):
        log.info("data check: %s", line)
    return report
