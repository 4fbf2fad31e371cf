"""Merge a run's LoRA adapter into the base model: `make merge run=outputs/dpo/...` or
`python scripts/merge.py <run dir> [--out DIR] [--force] [--push-to-hub user/name]`. Writes <run dir>/merged by default.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefopt.errors import RecipeError
from prefopt.export import merge_run, push_to_hub


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, help="output folder (default: <run dir>/merged)")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the merged model to this Hub repository")
    args = parser.parse_args(argv)
    try:
        out = merge_run(args.run_dir, args.out or args.run_dir / "merged", force=args.force)
        if args.push_to_hub:
            push_to_hub(out, args.push_to_hub)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"merged model: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
