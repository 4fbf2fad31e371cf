"""SFT, then DPO/IPO/KTO from it, as one command: `make train-sft-dpo` or `make train-sft-then method=kto`, or
`python scripts/train_sft_then.py dpo model=... --sft-args dataset=ultrachat --args method.beta=0.05 [--dir DIR]`.

Overrides before the options go to both stages, --sft-args to the SFT stage only, --args to the second only. Each
stage is a scripts/train.py run of its own in one stamped directory (<dir>/sft, <dir>/<method>). The second starts
from the SFT model and is measured against it: with LoRA it keeps training the SFT adapter, the reference a frozen
copy of it (ref=sft_adapter); with peft=none it loads the SFT model (model.path=), its frozen copy the reference.
A failed or stopped SFT stage starts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hydra.errors import HydraException

from prefopt.errors import RecipeError
from prefopt.run_files import METRICS_FILE, MODEL_DIR

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "scripts" / "train.py"
# What this script decides for each stage: where it writes, which method it trains, what the second starts from.
OWNED = ("method", "hydra.run.dir", "ref")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", help="the second stage: a method with a reference model (dpo, ipo, kto)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both stages (model=, dataset=, peft=, ...)")
    parser.add_argument("--sft-args", nargs="*", default=[], help="overrides for the SFT stage only")
    parser.add_argument("--args", nargs="*", default=[], help="overrides for the second stage only")
    parser.add_argument("--dir", type=Path, help="the parent directory (default outputs/sft-<method>/<model>/<time>)")
    parser.add_argument("--launch", default="", help="a command that starts train.py, e.g. 'accelerate launch ...'")
    return parser.parse_args(argv)


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def merged(*override_lists: list[str]) -> list[str]:
    """Later lists win: a key replaces the same key and its sub-keys given before (`dataset=ultrachat` for the SFT
    stage drops both stages' `dataset=ultrafeedback dataset.path=...`), so each stage gets one value per key."""
    kept: list[str] = []
    for overrides in override_lists:
        keys = {key_of(o) for o in overrides}
        kept = [o for o in kept if not any(key_of(o) == k or key_of(o).startswith(k + ".") for k in keys)]
        kept += overrides
    return kept


def refuse_owned(overrides: list[str]) -> None:
    owned = [o for o in overrides if key_of(o) in OWNED or key_of(o).startswith("ref.")]
    if owned:
        raise RecipeError(
            f"{' '.join(owned)}: this command sets each stage's method, run directory and reference itself. Give the "
            f"second method as the first argument (make train-sft-then method=kto), the parent directory with --dir."
        )


def compose_and_check(overrides: list[str]):
    """The stage's config, with the launcher's checks, before any stage trains (a typo fails in seconds)."""
    from prefopt.config import compose_config
    from prefopt.model_setup import resolve_model_setup
    from prefopt.recipe import load_recipe
    from prefopt.validation import problems

    cfg = compose_config(*overrides, output_dir=tempfile.gettempdir())  # a stand-in: each stage sets its own
    recipe = load_recipe(cfg.method.recipe)
    found = problems(cfg, recipe, resolve_model_setup(cfg, recipe))
    if found:
        raise RecipeError(f"method={cfg.method.name}: invalid config:\n  - " + "\n  - ".join(found))
    return cfg, recipe


def start_from(sft_model: Path, second_cfg) -> list[str]:
    """The second stage's overrides that make the SFT model its start and its reference."""
    if second_cfg.peft.name != "none":
        return ["ref=sft_adapter", f"ref.adapter_path={sft_model}"]
    # The saved folder replaces whatever the model config builds its weights from (a GGUF, a random init).
    builders = [f"model.{key}=null" for key in ("init_config", "gguf_package", "gguf_file") if key in second_cfg.model]
    return [f"model.path={sft_model}", *builders]


def wandb_group(cfg, group: str) -> list[str]:
    """Both stages in one W&B group, unless one was given."""
    return [f"logger.group={group}"] if cfg.logger.name == "wandb" and not cfg.logger.get("group") else []


def run_stage(name: str, overrides: list[str], run_dir: Path, launch: str) -> int:
    print(f"== {name}: scripts/train.py {' '.join(overrides)}", flush=True)
    # Every rank of a launch is told the same run directory.
    command = [*(shlex.split(launch) or [sys.executable]), str(TRAIN), *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.run(command, cwd=REPO, env=os.environ).returncode


def finished(run_dir: Path) -> bool:
    """The stage completed and saved its model (a health stop exits 0 but keeps no model/)."""
    metrics = run_dir / METRICS_FILE
    return (
        (run_dir / MODEL_DIR).is_dir()
        and metrics.is_file()
        and json.loads(metrics.read_text()).get("status") == "completed"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        for overrides in (args.overrides, args.sft_args, args.args):
            refuse_owned(overrides)
        sft_overrides = merged(["method=sft"], args.overrides, args.sft_args)
        second_overrides = merged([f"method={args.method}"], args.overrides, args.args)
        sft_cfg, _ = compose_and_check(sft_overrides)
        # The reference is checked by the second stage itself, once the SFT model exists.
        second_cfg, second = compose_and_check(second_overrides)
        if not second.uses_reference:
            raise RecipeError(
                f"method={args.method} trains without a reference model, so there is nothing to measure it against "
                f"the SFT model with; the second stage is dpo, ipo, kto or another method with a reference."
            )
        stamp = os.environ.get("RECIPES_RUN_STAMP") or time.strftime("%Y-%m-%d_%H-%M-%S")
        parent = (args.dir or Path("outputs") / f"sft-{args.method}" / sft_cfg.model.name / stamp).resolve()
        if parent.exists() and any(parent.iterdir()):
            raise RecipeError(f"{parent} already holds runs: pick another --dir, or leave it out for a new one.")
    except (RecipeError, HydraException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    sft_overrides += wandb_group(sft_cfg, f"sft-{args.method}-{parent.name}")
    second_overrides += wandb_group(second_cfg, f"sft-{args.method}-{parent.name}")
    sft_dir, second_dir = parent / "sft", parent / args.method
    code = run_stage("stage 1 of 2, sft", sft_overrides, sft_dir, args.launch)
    if code != 0 or not finished(sft_dir):
        print(
            f"error: the SFT stage did not complete (exit {code}; see {sft_dir / 'train.log'}), so the "
            f"{args.method} stage was not started.",
            file=sys.stderr,
        )
        return code or 1
    second_overrides += start_from(sft_dir / MODEL_DIR, second_cfg)
    code = run_stage(f"stage 2 of 2, {args.method}", second_overrides, second_dir, args.launch)
    if code != 0:
        print(
            f"error: the {args.method} stage failed (exit {code}; see {second_dir / 'train.log'}). The SFT model is "
            f"kept in {sft_dir / MODEL_DIR}; run the second stage alone with\n  python scripts/train.py "
            f"{' '.join(second_overrides)} hydra.run.dir={parent / (args.method + '-retry')}",
            file=sys.stderr,
        )
        return code
    print(f"sft: {sft_dir}\n{args.method}: {second_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
