"""`make train-online-dpo` (scripts/train.py method=online-dpo) end to end on the tiny model: a run directory with its
rounds, one summary, W&B offline, then `make pairs` from that run; and every command of docs/online-dpo.md composes
and passes the launcher's checks."""

import csv
import json
import re
import shlex
import subprocess
import sys

import pytest
from omegaconf import open_dict

from prefopt.config import compose_config
from prefopt.online_dpo import COLUMNS
from prefopt.run import plan_run
from tests.conftest import REPO, offline_wandb_data, run_train
from tests.prefopt.data.test_pairs import build_tiny_reward_model
from tests.prefopt.test_online_dpo import TINY_ONLINE


@pytest.mark.slow  # about a minute: two processes, W&B's offline writer
def test_a_run_directory_with_each_round_one_summary_and_wandb_then_on_policy_pairs_from_it(tmp_path):
    reward_dir = build_tiny_reward_model(tmp_path / "rm")
    run_dir = tmp_path / "online"
    overrides = [o for o in TINY_ONLINE if o != "logger=none"]
    result = run_train(*overrides, "logger=wandb", f"reward.model={reward_dir}", f"hydra.run.dir={run_dir}")
    console = result.stdout + result.stderr
    assert "round 2: pairs " in console and f"run directory: {run_dir}" in console

    for name in ("config.yaml", "train.log", "metrics.json", "eval.json", "rounds.csv", "rounds.md", "rounds.png"):
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, name
    with (run_dir / "rounds.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and [row["round"] for row in rows] == ["1", "2"]
    assert all(int(row["pairs"]) > 0 and row["trained_steps"] == "2" for row in rows)
    assert all(0 <= float(row["pass_rate"]) <= 1 and row["kl"] != "" for row in rows)
    table = (run_dir / "rounds.md").read_text()
    assert len(re.findall(r"^\| [12] ", table, flags=re.M)) == 2  # one table, a line per round
    for k in (1, 2):
        assert {p.name for p in (run_dir / f"round-{k}").iterdir()} == {"samples.jsonl", "pairs.jsonl", "round.json"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["rounds"] == 2 and metrics["method"] == "online-dpo"
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert evaluation["written_by"] == "scripts/train.py" and evaluation["pairs"]["num_pairs"] == 16
    assert evaluation["generation"]["num_prompts"] == 8
    assert (run_dir / "model" / "adapter_config.json").is_file()
    data = offline_wandb_data(run_dir, (b"online/pass_rate", b"online/pairs", b"train/loss"))
    assert b"online/pass_rate" in data and b"online/pairs" in data and b"train/loss" in data

    # The run is a finished run like train.py's: make pairs samples its policy.
    output = tmp_path / "pairs.jsonl"
    pairs = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_pairs.py"),
            f"run={run_dir}",
            "num_prompts=4",
            "num_samples=3",
            "max_new_tokens=8",
            "require_finished=false",
            f"reward.model={reward_dir}",
            f"output={output}",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pairs.returncode == 0, pairs.stderr[-3000:]
    stats = json.loads(pairs.stdout)
    assert stats["model"] == f"tiny-random (online-dpo run {run_dir})" and stats["pairs"] > 0


def test_every_online_dpo_command_of_the_docs_composes_and_passes_the_launchers_checks(tmp_path):
    page = (REPO / "docs" / "online-dpo.md").read_text()
    commands = [line.strip() for line in page.splitlines() if line.strip().startswith("make train-online-dpo")]
    assert len(commands) >= 3
    for command in commands:
        words = shlex.split(command, comments=True)
        printed = subprocess.run(["make", "-n", *words[1:]], cwd=REPO, capture_output=True, text=True, check=True)
        line = next(li for li in printed.stdout.splitlines() if "scripts/train.py" in li)
        overrides = shlex.split(line)[2:]
        assert overrides[0] == "method=online-dpo"
        overrides = [re.sub(r"=outputs/rm/[^ ]+", f"={build_tiny_reward_model(tmp_path / 'rm')}", o) for o in overrides]
        cfg = compose_config(*overrides, output_dir=str(tmp_path / "run"))
        with open_dict(cfg):
            del cfg["hydra"]
        plan_run(cfg)  # the checks the launcher runs before loading anything
