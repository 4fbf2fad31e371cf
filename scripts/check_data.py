"""Pre-flight data report: `make check-data dataset=hh-rlhf model=qwen2.5-0.5b-instruct` (or `python scripts/check_data.py ...`).

Takes the same Hydra overrides as scripts/train.py (`method=kto`, `train.max_length=512`, `dataset.path=pairs.jsonl`)
and loads only the tokenizer, never model weights. Prints a table; `--json` prints one JSON object instead.
A mixture (`dataset=mix`) is reported as a whole and per source.
"""

from __future__ import annotations

import prefopt.console  # isort: skip  (first: what libraries log while importing reaches the log)
import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig

from prefopt.config import compose_config
from prefopt.data import load_splits
from prefopt.data.mixture import load_mixture
from prefopt.data.report import data_report, format_table, sources_report
from prefopt.errors import RecipeError
from prefopt.models import check_available, load_tokenizer
from prefopt.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]


def check(cfg: DictConfig) -> dict:
    data_format = load_recipe(cfg.method.recipe).data_format
    check_available(cfg.model)
    tokenizer = load_tokenizer(cfg.model)
    if cfg.dataset.format == "mix":
        mixture = load_mixture(cfg.dataset, data_format)
        report = data_report(mixture.train, mixture.eval, tokenizer, cfg.train.max_length)
        report["sources"] = sources_report(mixture.parts, tokenizer, cfg.train.max_length)
    else:
        train, eval_ = load_splits(cfg.dataset, data_format)
        report = data_report(train, eval_, tokenizer, cfg.train.max_length)
    return {"dataset": cfg.dataset.name, "model": cfg.model.name, "method": cfg.method.name, **report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for scripts/train.py")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    prefopt.console.setup_tool(None)  # the libraries' warnings stay off the report
    try:
        with contextlib.redirect_stdout(
            sys.stderr
        ):  # libraries print notes at import (transformers' W&B line): keep stdout for us
            result = check(compose_config(*args.overrides))
    except (RecipeError, HydraException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        title = f"Data check: dataset={result['dataset']} model={result['model']} method={result['method']}"
        print(format_table(result, title))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
