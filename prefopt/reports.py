"""Small helpers of the report scripts (summarize_sweep, compare_methods, plot_frontier) and the printed reports.

Reading the JSON a run left (which may be missing or broken), picking numbers out of it, formatting them as table
cells, tables for the console and for markdown, CSV files and matplotlib figures written without a display.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`; None when the file is missing, unreadable, not JSON or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def lookup(data, *path):
    """data[path[0]][path[1]]...; None as soon as a key is missing or a level is not a dict."""
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def finite_number(value) -> float | None:
    """`value` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def format_cell(value, spec: str = ".3f", missing: str = "-") -> str:
    """A float formatted with `spec`, an int or text as it is; `missing` for None, NaN, +-inf and bools."""
    if value is None or isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec) if isinstance(value, float) else str(value)


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


def pyplot():
    """matplotlib.pyplot on the Agg backend: no display, files only (imported on first use: it is slow to load)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """Lay the figure out, write it to `path` (the format from its suffix) and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def method_label(method: Mapping) -> str:
    """A method config's name with the loss terms it adds after its first spelled out: dpo with loss_type
    [sigmoid, sft] is dpo+sft, ipo with [ipo, sft] ipo+sft; a single loss, or none, is the name alone."""
    losses = method.get("loss_type")
    extra = [] if losses is None or isinstance(losses, str) else [str(loss) for loss in list(losses)[1:]]
    return "+".join([str(method["name"]), *extra])
