"""Train several methods with one budget and seeds, and compare them: `python scripts/compare_methods.py [overrides]`.

`make compare-methods [model= dataset= peft= logger=] ARGS="--seeds 1,2,3 --methods dpo,orpo train.max_steps=60"`.
Runs each method once per seed (same overrides, so the same steps, batch, learning rate and data) into
<out>/<method>/seed-<seed>/, then writes compare.md, compare.csv (one row per run) and compare.png to <out> (default
outputs/compare/<time>). Every number comes from the runs' eval.json and metrics.json: held-out pass rate and
right-content rate (the right answer in any format) before and after, overall and per kind, reward accuracy, KL,
with a judge (judge=reward_model or judge=llm) its win rates raw and length-controlled, and wall time, each with its noise (one seed: 95% intervals over prompts or pairs, KL's standard error over answers;
several: the mean and its standard error over seeds); prefopt/reports/compare.py computes and writes them. Choose
settings with `dataset.eval_split=validation`. Every method trains through scripts/train.py; a method in stages
(sft-dpo) is read from its stage folders.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from prefopt.config import compose_config, override_key
from prefopt.errors import RecipeError
from prefopt.reports import compare

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Compared:
    """One entry of --methods: a method config of conf/method/, trained with its own overrides too, shown as `label`.
    A method in stages (sft-dpo) keeps one folder per stage: "before" is read from the first stage's reference,
    "after" from the last stage's policy, wall time is summed over stages."""

    label: str
    method: str
    overrides: tuple[str, ...] = ()

    def command(self, run_dir: Path, shared: list[str]) -> list[str]:
        train = REPO / "scripts" / "train.py"
        return [
            sys.executable,
            str(train),
            f"method={self.method}",
            *self.overrides,
            *shared,
            f"hydra.run.dir={run_dir}",
        ]

    def stage_dirs(self, run_dir: Path) -> list[Path]:
        from prefopt.stages import stage_names

        method = compose_config(f"method={self.method}", *self.overrides).method
        return [run_dir / stage for stage in stage_names(method)] or [run_dir]


@functools.cache
def available_methods() -> list[str]:
    """The method configs whose recipe trains a policy (a reward model answers nothing to compare)."""
    from prefopt.run import resolve_plan

    names = sorted(p.stem for p in (REPO / "conf" / "method").glob("*.yaml"))
    # Importing the trainers prints "[INFO] Running in WANDB offline mode" (transformers) where --json needs stdout.
    with contextlib.redirect_stdout(sys.stderr):
        plans = {name: resolve_plan(compose_config(f"method={name}")) for name in names}
    return [name for name, plan in plans.items() if not plan.recipe.trains_reward_model]


def parse_methods(text: str) -> list[Compared]:
    """`dpo,orpo,plain-dpo=dpo:method.loss_type=[sigmoid]`: method configs, each optionally `label=method` with
    overrides of its own after colons (commas inside [...] belong to an override)."""
    entries = [e.strip() for e in re.split(r",(?![^\[]*\])", text) if e.strip()]
    if not entries:
        raise RecipeError("--methods: none given; e.g. --methods dpo,orpo.")
    known, compared = available_methods(), []
    for entry in entries:
        head, *overrides = entry.split(":")
        label, _, method = head.rpartition("=") if "=" in head else (head, "", head)
        if method not in known:
            raise RecipeError(f"--methods: unknown {method} in {entry}; choose from {', '.join(known)}.")
        compared.append(Compared(label, method, tuple(overrides)))
    labels = [c.label for c in compared]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise RecipeError(
            f"--methods: {', '.join(twice)} given twice; label variants: plain-dpo=dpo:method.loss_type=[sigmoid]."
        )
    return compared


def check_composes(methods: list[Compared], shared: list[str]) -> None:
    """Every run's config composes (Hydra) before the first trains: a bad override fails here, not hours later."""
    from hydra.errors import HydraException

    for compared in methods:
        try:
            compose_config(f"method={compared.method}", *compared.overrides, *shared)
        except HydraException as exc:
            raise RecipeError(f"--methods {compared.label}: {exc}") from None


def run_dir_name(label: str) -> str:
    return label.replace("+", "-").replace("->", "-")


def train_one(compared: Compared, seed: int, shared: list[str], out: Path) -> Path:
    """One run of `compared` with train.seed=`seed`; its console output goes to <out>/<label>/seed-<seed>.log."""
    run_dir = out / run_dir_name(compared.label) / f"seed-{seed}"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    command = compared.command(run_dir, [*shared, f"train.seed={seed}"])
    with run_dir.with_suffix(".log").open("w") as console:
        subprocess.run(command, cwd=REPO, stdout=console, stderr=subprocess.STDOUT, env={**os.environ}, check=False)
    return run_dir


def one_budget(overrides: list[str]) -> list[str]:
    """The overrides, with conf/train.yaml's train.max_steps made explicit unless given: a method with a budget of
    its own (conf/budget/, pulled in by its method config) would otherwise train longer than the others."""
    if any(override_key(o) == "train.max_steps" for o in overrides):
        return overrides
    return [*overrides, f"train.max_steps={OmegaConf.load(REPO / 'conf' / 'train.yaml').train.max_steps}"]


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise RecipeError(f"--seeds {text}: give comma-separated integers, e.g. --seeds 1,2,3.") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise RecipeError(f"--seeds {text}: give one or more distinct integers, e.g. --seeds 1,2,3.")
    return seeds


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods",
        help="comma-separated method configs (default: every one that trains a policy); label=method:override:... "
        "adds a variant, e.g. plain-dpo=dpo:method.loss_type=[sigmoid]",
    )
    parser.add_argument("--seeds", default="42", help="comma-separated train.seed values, one run each (default 42)")
    parser.add_argument("--out", type=Path, help="output folder (default outputs/compare/<time>)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args, overrides = parser.parse_known_args(argv)
    unknown = [o for o in overrides if o.startswith("--")]
    if unknown:
        parser.error(f"unknown option(s) {' '.join(unknown)}; Hydra overrides look like key=value")
    seeded = [o for o in overrides if override_key(o) == "train.seed"]
    if seeded:
        parser.error(f"{seeded[0]}: give seeds with --seeds (one run per seed), not as an override")
    return args, overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    try:
        methods = parse_methods(args.methods or ",".join(available_methods()))
        seeds = parse_seeds(args.seeds)
        out = args.out or REPO / "outputs" / "compare" / time.strftime("%Y-%m-%d_%H-%M-%S")
        taken = [run_dir_name(m.label) for m in methods if (out / run_dir_name(m.label)).exists()]
        if taken:
            raise RecipeError(f"{out} already holds run(s) {', '.join(taken)}: pick a new --out.")
        logger = next((o.split("=", 1)[1] for o in reversed(overrides) if override_key(o) == "logger"), "wandb")
        shared = one_budget(overrides) + ([f"logger.group=compare-{out.name}"] if logger == "wandb" else [])
        check_composes(methods, shared)
        out.mkdir(parents=True, exist_ok=True)
        records = []
        for compared in methods:
            for seed in seeds:
                where = out / run_dir_name(compared.label) / f"seed-{seed}"
                print(f"training {compared.label} seed {seed} -> {where}", file=sys.stderr)
                run_dir = train_one(compared, seed, shared, out)
                records.append(compare.read_run(compared.label, seed, run_dir, compared.stage_dirs(run_dir)))
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = compare.summarize(records)
    compare.write_runs_csv(records, out / "compare.csv")
    compare.write_markdown(rows, records, shared, out / "compare.md")
    compare.plot(rows, records, out / "compare.png")
    if args.json:
        print(json.dumps({"out": str(out), "overrides": shared, "seeds": seeds, "rows": rows, "runs": records}))
    else:
        print(compare.format_table(rows))
        print(f"\nwritten: {out / 'compare.md'}, {out / 'compare.csv'}, {out / 'compare.png'}")
    return 0 if all(r["status"] == "completed" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
