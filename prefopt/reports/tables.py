"""Numbers as table cells, tables for the console and for markdown, and the one CSV writer."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from prefopt.reports.stats import Estimate

# The columns an estimate adds beside its value in a CSV or a JSON record: standard error and 95% interval.
ESTIMATE_SUFFIXES = ("_se", "_low", "_high")


def format_cell(value, spec: str = ".3f", missing: str = "-") -> str:
    """A float formatted with `spec`, an int or text as it is; `missing` for None, NaN, +-inf and bools."""
    if value is None or isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec) if isinstance(value, float) else str(value)


def estimate_cell(estimate: Estimate, spec: str = ".3f", missing: str = "-") -> str:
    """A rate of one run with its 95% interval, `0.516 (0.430-0.601)`; any other estimate with one standard error,
    `11.310 ± 0.520` (a mean over seeds: the standard error over them); a value without noise alone."""
    text = format_cell(estimate.value, spec, missing)
    if estimate.value is None or estimate.se is None:
        return text
    if estimate.rate and estimate.over != "seeds":
        return f"{text} ({format(estimate.low, spec)}-{format(estimate.high, spec)})"
    return f"{text} ± {format(estimate.se, spec)}"


def estimate_fields(key: str, estimate: Estimate) -> dict:
    """`key` and its ESTIMATE_SUFFIXES columns: value, standard error, 95% interval (None where unknown)."""
    return {
        key: estimate.value,
        f"{key}_se": estimate.se,
        f"{key}_low": estimate.low,
        f"{key}_high": estimate.high,
    }


def estimate_columns(keys: Iterable[str]) -> list[str]:
    return [column for key in keys for column in (key, *(key + suffix for suffix in ESTIMATE_SUFFIXES))]


def _widths(rows: Sequence[Sequence[str]]) -> list[int]:
    return [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]


def console_table(rows: Sequence[Sequence[str]], rule: bool = True) -> str:
    """Columns padded to line up and two spaces apart; the first row is the header, underlined with dashes if `rule`."""
    widths = _widths(rows)
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """A markdown table (the first row is the header) padded to line up in a terminal too."""
    widths = _widths(rows)
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def write_csv(path: Path, columns: Sequence[str], records: Iterable[Mapping]) -> None:
    """A header row of `columns`, then each record's values in that order: numbers at full precision, None as an
    empty cell (csv's rule), keys outside `columns` left out."""
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([record[c] for c in columns] for record in records)
