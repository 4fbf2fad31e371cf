"""Two tiny runs trained by scripts/compare_methods.py, made once per test session and shared by the tests of
compare_methods.py and plot_frontier.py (training is the slow part)."""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import REPO

METHODS = ["dpo", "orpo"]
SEED = 7
OVERRIDES = [
    "model=tiny-random",
    "logger=none",
    "train.max_steps=2",
    "dataset.num_train=16",
    "dataset.num_eval=8",
    "eval_before_training=false",
    "eval_generation.max_prompts=6",
    "eval_generation.max_new_tokens=8",
]


@functools.cache
def compared_runs() -> tuple[Path, dict, str]:
    """(output folder, the --json report, stderr) of `compare_methods.py --methods dpo,orpo` on the tiny model."""
    scratch = tempfile.mkdtemp(prefix="compare-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # pytest's tmp_path cannot span two test files
    out = Path(scratch) / "out"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "compare_methods.py"),
            "--methods",
            ",".join(METHODS),
            "--seeds",
            str(SEED),
            "--out",
            str(out),
            "--json",
            *OVERRIDES,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        logs = "\n".join(p.read_text()[-3000:] for p in out.glob("*/*.log"))
        raise AssertionError(f"compare_methods.py failed ({result.returncode}):\n{result.stderr[-3000:]}\n{logs}")
    return out, json.loads(result.stdout), result.stderr


def run_dir(out: Path, method: str) -> Path:
    """Where compare_methods.py put `method`'s run of SEED."""
    return out / method / f"seed-{SEED}"
