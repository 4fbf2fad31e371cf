"""Benchmark the reference log-prob cache: a beta sweep that reuses it against the same jobs run independently.

Run: `python bench/ref_cache.py [--betas 0.01,0.05,0.1,0.5] [--json] [hydra overrides...]` (`make bench-ref-cache`).
Three arms, one after the other, each with a fresh cache directory: the sweep with
`method.precompute_ref_log_probs=true` (job 0 computes the reference log-probs, jobs 1-3 reuse them), the same
multirun without it (the reference runs at every step of every job: isolates the cache), and independent runs
(one process per job, as people run them by hand).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# A short budget on the embedded default: what differs between the arms is the reference's share of each job.
DEFAULTS = [
    "logger=none",
    "train.max_steps=8",
    "dataset.num_train=64",
    "dataset.num_eval=32",
    "eval_generation.enabled=false",
]


def _run(args: list[str], cache: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args],
        cwd=REPO,
        check=True,
        capture_output=True,
        env={**os.environ, "RECIPES_CACHE_DIR": str(cache)},
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--betas", default="0.01,0.05,0.1,0.5")
    parser.add_argument("--json", action="store_true")
    args, overrides = parser.parse_known_args()
    overrides = DEFAULTS + overrides
    betas = args.betas.split(",")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        # The GGUF-to-safetensors conversion is shared: do it before timing anything.
        models = Path(os.environ.get("RECIPES_CACHE_DIR", Path.home() / ".cache" / "pref-recipes")) / "models"
        for arm in ("sweep", "sweep-no-cache", "independent"):
            (scratch / arm).mkdir()
            if models.is_dir():
                os.symlink(models, scratch / arm / "models")
        sweep_s = _run(
            [
                "-m",
                f"method.beta={args.betas}",
                "method.precompute_ref_log_probs=true",
                *overrides,
                f"hydra.sweep.dir={scratch / 'sweep-runs'}",
            ],
            scratch / "sweep",
        )
        no_cache_s = _run(
            ["-m", f"method.beta={args.betas}", *overrides, f"hydra.sweep.dir={scratch / 'no-cache-runs'}"],
            scratch / "sweep-no-cache",
        )
        independent_s = sum(
            _run(
                [f"method.beta={beta}", *overrides, f"hydra.run.dir={scratch / f'run-{beta}'}"], scratch / "independent"
            )
            for beta in betas
        )
    result = {
        "jobs": len(betas),
        "overrides": overrides,
        "sweep_with_cache_s": round(sweep_s, 1),
        "sweep_without_cache_s": round(no_cache_s, 1),
        "independent_runs_s": round(independent_s, 1),
        "cache_speedup": round(no_cache_s / sweep_s, 2),
        "speedup_vs_independent": round(independent_s / sweep_s, 2),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{len(betas)}-point beta sweep, {' '.join(overrides)}")
    print(f"  sweep reusing reference log-probs: {sweep_s:7.1f} s")
    print(f"  same sweep without the cache:      {no_cache_s:7.1f} s  ({no_cache_s / sweep_s:.2f}x)")
    print(f"  {len(betas)} independent runs:             {independent_s:7.1f} s  ({independent_s / sweep_s:.2f}x)")


if __name__ == "__main__":
    main()
