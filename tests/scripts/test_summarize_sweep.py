"""scripts/summarize_sweep.py on a real two-job multirun; `make sweep-beta`. Hand-made sweeps (failed jobs, seeds,
the reading line) are in tests/prefopt/reports/test_sweep.py."""

import csv
import json
import subprocess
import sys

from tests.conftest import FAST, REPO, read_run, run_train

SCRIPT = REPO / "scripts" / "summarize_sweep.py"
COLUMNS = ["train_loss", "eval_loss", "eval_rewards/accuracies", "eval_rewards/margins", "wall_time_s"]


def summarize(sweep, *args, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(sweep), *args], capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_summary_of_a_real_multirun_matches_each_jobs_metrics(tmp_path):
    sweep = tmp_path / "sweep"
    run_train("-m", "method.beta=0.05,0.5", *FAST, "train.max_steps=2", f"hydra.sweep.dir={sweep}")
    jobs = {job: read_run(sweep / job)[0] for job in ("0", "1")}

    result = summarize(sweep)
    assert "2 jobs, 2 completed, 0 failed" in result.stdout
    assert "method.beta=0.05" in result.stdout and "method.beta=0.5" in result.stdout

    rows = read_csv(sweep / "summary.csv")
    assert [(r["job"], r["overrides"], r["status"]) for r in rows] == [
        ("0", "method.beta=0.05", "completed"),
        ("1", "method.beta=0.5", "completed"),
    ]
    for row in rows:
        metrics = jobs[row["job"]]
        assert float(row["beta"]) == metrics["beta"]
        for key in COLUMNS:
            assert float(row[key]) == metrics[key], key  # full precision, not the table's rounding
    # The launcher's held-out evaluation (eval.json) gives the behaviour columns, each with its noise.
    for row in rows:
        evaluation = json.loads((sweep / row["job"] / "eval.json").read_text())
        generation = evaluation["generation"]
        assert (
            int(row["prompts"]) == generation["num_prompts"] and int(row["pairs"]) == evaluation["pairs"]["num_pairs"]
        )
        assert float(row["pass_rate"]) == generation["pass_rate"]["policy"]
        assert float(row["kl"]) == generation["kl_policy_reference"]
        assert float(row["kl_se"]) == generation["kl_policy_reference_se"] > 0
        for key in ("pass_rate", "right_content", "win_rate", "eval_rewards/accuracies"):
            low, value, high = (float(row[key + suffix]) for suffix in ("_low", "", "_high"))
            assert 0 <= low <= value <= high <= 1 and high > low, key  # even at 0 passed the interval has width
        assert row["eval_loss_se"] == row["eval_loss_low"] == ""  # TRL logs the mean only; one seed: no noise
    by_setting = read_csv(sweep / "summary_by_setting.csv")
    assert [(r["setting"], r["runs"], r["jobs"]) for r in by_setting] == [
        ("method.beta=0.05", "1", "0"),
        ("method.beta=0.5", "1", "1"),
    ]
    assert by_setting[1]["pass_rate_high"] == rows[1]["pass_rate_high"]  # one run: its own interval
    assert "reading: pass rate: " in result.stdout

    markdown = (sweep / "summary.md").read_text()
    assert "model=tiny-random" in markdown  # the shared overrides are stated once
    assert f"{jobs['1']['eval_loss']:.4g}" in markdown and "summary.png" in markdown
    assert (sweep / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    summary = json.loads(summarize(sweep, "--json").stdout)
    assert (summary["jobs"], summary["completed"], summary["failed"]) == (2, 2, 0)
    assert [r["beta"] for r in summary["rows"]] == [0.05, 0.5]
    assert summary["rows"][1]["eval_rewards/accuracies"] == jobs["1"]["eval_rewards/accuracies"]


def test_a_folder_without_jobs_is_an_error_that_says_what_to_pass(tmp_path):
    (tmp_path / "not-a-sweep").mkdir()
    result = summarize(tmp_path / "not-a-sweep", check=False)
    assert result.returncode == 2
    assert "holds no job directories" in result.stderr and "multirun/" in result.stderr
    assert not (tmp_path / "not-a-sweep" / "summary.csv").exists()
    missing = summarize(tmp_path / "nope", check=False)
    assert missing.returncode == 2 and "no such sweep directory" in missing.stderr


def make_dry_run(*variables: str) -> list[str]:
    """The commands `make sweep-beta` would run (make -n runs nothing)."""
    result = subprocess.run(["make", "-n", "sweep-beta", *variables], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    commands = result.stdout.replace("\\\n", " ").splitlines()
    return [c for c in commands if "scripts/train.py" in c or "summarize_sweep.py" in c]


def test_sweep_beta_runs_a_multirun_then_summarizes_the_same_directory():
    train, summary = make_dry_run("model=tiny-random")
    assert "-m method=dpo method.beta=0.01,0.05,0.1,0.5 model=tiny-random" in train
    sweep_dir = train.split("hydra.sweep.dir=")[1].split("'")[0]
    name = sweep_dir.rsplit("/", 1)[1]
    assert sweep_dir == f"multirun/dpo/${{model.name}}/{name}" and name.startswith("sweep-dpo-")
    assert summary.endswith(f"scripts/summarize_sweep.py multirun/dpo/*/{name}")
    assert f"logger.group={name}" in train  # the default logger is wandb: one group per sweep


def test_sweep_beta_sets_no_wandb_group_without_wandb():
    train, _ = make_dry_run("logger=none", "method=ipo", "betas=0.1,0.2")
    assert "logger.group" not in train
    assert "-m method=ipo method.beta=0.1,0.2" in train and "logger=none" in train


def test_sweep_beta_crosses_betas_with_seeds():
    train, _ = make_dry_run("logger=none", "betas=0.01,1", "seeds=1,2,3")
    assert "-m method=dpo method.beta=0.01,1" in train and "train.seed=1,2,3" in train.split()
    assert "train.seed" not in make_dry_run("logger=none")[0]  # no seeds=: the config's seed, one job per beta
