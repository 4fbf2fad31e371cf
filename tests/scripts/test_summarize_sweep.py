"""scripts/summarize_sweep.py on a real two-job multirun and on a hand-made sweep with failed jobs; `make sweep-beta`."""

import csv
import json
import subprocess
import sys

import pytest
import yaml

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
    # The launcher's held-out evaluation (eval.json) gives the behaviour columns; without one there are none.
    evaluations = [sweep / job / "eval.json" for job in ("0", "1")]
    if all(path.exists() for path in evaluations):
        for row, path in zip(rows, evaluations):
            generation = json.loads(path.read_text())["generation"]
            assert float(row["pass_rate"]) == generation["pass_rate"]["policy"]
            assert float(row["kl"]) == generation["kl_policy_reference"]
    else:
        assert "pass_rate" not in rows[0]

    markdown = (sweep / "summary.md").read_text()
    assert "model=tiny-random" in markdown  # the shared overrides are stated once
    assert f"{jobs['1']['eval_loss']:.4g}" in markdown and "summary.png" in markdown
    assert (sweep / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    summary = json.loads(summarize(sweep, "--json").stdout)
    assert (summary["jobs"], summary["completed"], summary["failed"]) == (2, 2, 0)
    assert [r["beta"] for r in summary["rows"]] == [0.05, 0.5]
    assert summary["rows"][1]["eval_rewards/accuracies"] == jobs["1"]["eval_rewards/accuracies"]


def make_job(sweep, name, overrides, metrics=None, evaluation=None):
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if evaluation is not None:
        (job / "eval.json").write_text(json.dumps(evaluation))


@pytest.fixture
def sweep_with_failures(tmp_path):
    sweep = tmp_path / "sweep"
    shared = ["model=tiny-random", "logger=none"]
    make_job(
        sweep,
        "0",
        ["method.beta=0.1", *shared],
        {
            "status": "completed",
            "beta": 0.1,
            "train_loss": 0.61,
            "eval_loss": 0.52,
            "eval_rewards/accuracies": 0.75,
            "eval_rewards/margins": 1.25,
            "wall_time_s": 12.5,
        },
        evaluation={"pass_rate": 0.4, "kl": 0.031},
    )
    make_job(
        sweep,
        "1",
        ["method.beta=-1", *shared],
        {"status": "failed", "error": "invalid config: method.beta=-1: must be > 0", "method": "dpo"},
    )
    make_job(sweep, "2", ["method.beta=0.5", *shared])  # crashed before writing metrics.json
    make_job(
        sweep,
        "10",
        ["method.beta=0.9", *shared],
        {
            "status": "completed",
            "beta": 0.9,
            "train_loss": 0.7,
            "eval_loss": 0.69,
            "eval_rewards/accuracies": 0.5,
            "eval_rewards/margins": 0.01,
            "wall_time_s": 11.0,
        },
        evaluation={"generation": {"pass_rate": {"policy": 0.25, "reference": 0.1}, "kl_policy_reference": 0.2}},
    )
    return sweep


def test_failed_jobs_are_rows_and_the_rest_is_still_summarized(sweep_with_failures):
    sweep = sweep_with_failures
    result = summarize(sweep)
    assert "4 jobs, 2 completed, 2 failed" in result.stdout
    assert "FAILED job 1 (method.beta=-1): failed: invalid config: method.beta=-1: must be > 0" in result.stdout
    assert "FAILED job 2 (method.beta=0.5): failed: metrics.json missing" in result.stdout

    rows = read_csv(sweep / "summary.csv")
    assert [r["job"] for r in rows] == ["0", "1", "2", "10"]  # job order, not string order
    assert [r["status"] for r in rows] == ["completed", "failed", "failed", "completed"]
    assert (float(rows[0]["pass_rate"]), float(rows[0]["kl"]), float(rows[0]["eval_loss"])) == (0.4, 0.031, 0.52)
    assert (float(rows[3]["pass_rate"]), float(rows[3]["kl"])) == (0.25, 0.2)  # prefopt/evaluation's nesting
    assert rows[1]["eval_loss"] == "" and rows[1]["pass_rate"] == ""
    assert float(rows[2]["beta"]) == 0.5  # read from the overrides when there is no metrics.json
    assert "must be > 0" in rows[1]["error"]

    summary = json.loads(summarize(sweep, "--json").stdout)
    assert summary["metrics"] == [
        "train_loss",
        "eval_loss",
        "eval_rewards/accuracies",
        "eval_rewards/margins",
        "pass_rate",
        "kl",
    ]
    assert summary["common_overrides"] == ["model=tiny-random", "logger=none"]
    assert summary["rows"][0]["overrides"] == ["method.beta=0.1"]
    markdown = (sweep / "summary.md").read_text()
    assert "Failed jobs:" in markdown and "| 0.4 " in markdown
    assert (sweep / "summary.png").stat().st_size > 0


def test_eval_json_overrides_metrics_json(tmp_path):
    sweep = tmp_path / "sweep"
    make_job(
        sweep,
        "0",
        ["method.beta=0.1"],
        {"status": "completed", "beta": 0.1, "eval_loss": 0.5, "pass_rate": 0.1},
        evaluation={"pass_rate": 0.3},
    )
    rows = json.loads(summarize(sweep, "--json").stdout)["rows"]
    assert rows[0]["pass_rate"] == 0.3 and rows[0]["kl"] is None


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
