"""Summarize a Hydra sweep: `python scripts/summarize_sweep.py multirun/dpo/smollm2-135m/<time> [--json]`.

One row per job and one per setting (jobs that differ only in their seed: mean and standard error over seeds), each
metric with its noise, and a first line saying which metrics beta moved beyond their noise. Writes summary.csv,
summary_by_setting.csv, summary.md and summary.png into the sweep directory (prefopt/reports/sweep.py);
`make sweep-beta` runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prefopt.errors import RecipeError
from prefopt.reports import sweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep directory (holds one numbered folder per job)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    try:
        summary = sweep.summarize(args.sweep_dir)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    sweep.write_outputs(summary, args.sweep_dir)
    if args.json:
        print(json.dumps(sweep.to_json(summary)))
        return 0
    print(sweep.headline(summary))
    print("reading: " + summary["reading"])
    if summary["loss_note"]:
        print(summary["loss_note"])
    if summary["common_overrides"]:
        print("shared overrides: " + " ".join(summary["common_overrides"]))
    print(sweep.format_table(summary))
    for line in sweep.failures(summary):
        print("FAILED " + line)
    print("wrote " + ", ".join(summary["files"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
