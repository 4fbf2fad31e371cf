"""Plot verifier pass rate (or a judge's length-controlled win rate) against KL to the reference for a sweep: `python scripts/plot_frontier.py <sweep dir>`.

`make frontier sweep=<sweep dir>`. Reads every run (each subfolder with metrics.json and eval.json) and groups
the runs by method and beta: runs that differ only in their seed (`make sweep-beta seeds=1,2,3`) make one point,
the mean, with the standard error and 95% interval over the runs, each run drawn faint too; a single run's point
has its own noise (the Wilson interval over its prompts, KL's standard error over its answers). Points no other
point beats on both axes are joined as the frontier. Writes frontier.png and frontier.csv (one row per point: mean,
standard error, interval, n) into the sweep dir (prefopt/reports/frontier.py); --json prints runs and points.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prefopt.errors import RecipeError
from prefopt.reports import frontier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    try:
        found = frontier.read_runs(args.sweep_dir)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    png, table = args.sweep_dir / "frontier.png", args.sweep_dir / "frontier.csv"
    points = frontier.group_points(found)
    frontier.plot(points, found, png)
    frontier.write_points_csv(points, table)
    if args.json:
        report = {
            "sweep_dir": str(args.sweep_dir),
            "png": str(png),
            "csv": str(table),
            "runs": [frontier.flat(r) for r in found],
            "points": [{**frontier.flat(p), "runs": p["runs"]} for p in points],
        }
        print(json.dumps(report))
    else:
        print(frontier.format_table(points))
        print(f"\nwritten: {png}, {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
