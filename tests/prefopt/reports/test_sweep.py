"""prefopt/reports/sweep.py on hand-made sweep directories: failed jobs, where numbers come from, settings over
seeds, the reading line and the files it writes."""

import csv
import json

import pytest
import yaml

from prefopt.reports import sweep


def make_job(root, name, overrides, metrics=None, evaluation=None, method=None):
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if evaluation is not None:
        (job / "eval.json").write_text(json.dumps(evaluation))
    if method is not None:
        (job / "config.yaml").write_text(yaml.safe_dump({"method": method}))


def read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture
def sweep_with_failures(tmp_path):
    root = tmp_path / "sweep"
    shared = ["model=tiny-random", "logger=none"]
    make_job(
        root,
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
        root,
        "1",
        ["method.beta=-1", *shared],
        {"status": "failed", "error": "invalid config: method.beta=-1: must be > 0", "method": "dpo"},
    )
    make_job(root, "2", ["method.beta=0.5", *shared])  # crashed before writing metrics.json
    make_job(
        root,
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
    return root


def test_failed_jobs_are_rows_and_the_rest_is_still_summarized(sweep_with_failures):
    root = sweep_with_failures
    summary = sweep.summarize(root)
    assert (summary["jobs"], summary["completed"], summary["failed"]) == (4, 2, 2)
    assert sweep.failures(summary) == [
        "job 1 (method.beta=-1): failed: invalid config: method.beta=-1: must be > 0",
        "job 2 (method.beta=0.5): failed: metrics.json missing: the job crashed, was stopped or is still running",
    ]
    sweep.write_outputs(summary, root)
    rows = read_csv(root / "summary.csv")
    assert [r["job"] for r in rows] == ["0", "1", "2", "10"]  # job order, not string order
    assert [r["status"] for r in rows] == ["completed", "failed", "failed", "completed"]
    assert (float(rows[0]["pass_rate"]), float(rows[0]["kl"]), float(rows[0]["eval_loss"])) == (0.4, 0.031, 0.52)
    assert (float(rows[3]["pass_rate"]), float(rows[3]["kl"])) == (0.25, 0.2)  # prefopt/evaluation's nesting
    assert rows[3]["pass_rate_low"] == ""  # no num_prompts in that eval.json: no interval
    assert rows[1]["eval_loss"] == "" and rows[1]["pass_rate"] == ""
    assert float(rows[2]["beta"]) == 0.5  # read from the overrides when there is no metrics.json
    assert "must be > 0" in rows[1]["error"]
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
    assert [g["beta"] for g in summary["groups"]] == [0.1, 0.9]  # completed jobs only
    markdown = (root / "summary.md").read_text()
    assert "Failed jobs:" in markdown and "| 0.4 " in markdown
    assert (root / "summary.png").stat().st_size > 0


def test_eval_json_overrides_metrics_json(tmp_path):
    make_job(
        tmp_path,
        "0",
        ["method.beta=0.1"],
        {"status": "completed", "beta": 0.1, "eval_loss": 0.5, "pass_rate": 0.1},
        evaluation={"pass_rate": 0.3},
    )
    (row,) = sweep.summarize(tmp_path)["rows"]
    assert row["estimates"]["pass_rate"].value == 0.3 and row["estimates"]["kl"].value is None


def evaluation(passed, kl, kl_se=0.5, prompts=128):
    return {
        "generation": {
            "num_prompts": prompts,
            "pass_rate": {"policy": passed / prompts, "reference": 0.0},
            "right_content_rate": {"policy": passed / prompts, "reference": 0.3},
            "win_rate": passed / prompts,
            "kl_policy_reference": kl,
            "kl_policy_reference_se": kl_se,
        },
        "pairs": {"reward_accuracy": 0.953125, "num_pairs": 64},
    }


def beta_sweep(root, jobs, loss_type=("sigmoid", "sft")):
    """jobs: (beta, seed or None, prompts passed, kl, margin) per job, as `make sweep-beta` lays them out."""
    for number, (beta, seed, passed, kl, margin) in enumerate(jobs):
        make_job(
            root,
            str(number),
            [f"method.beta={beta}", *([f"train.seed={seed}"] if seed is not None else []), "logger=none"],
            {"status": "completed", "beta": beta, "eval_loss": 0.5, "eval_rewards/margins": margin},
            evaluation(passed, kl),
            method={"name": "dpo", "beta": beta, "loss_type": list(loss_type)},
        )
    return sweep.summarize(root)


def test_the_reading_says_what_beta_moved_beyond_noise_and_what_it_did_not(tmp_path):
    # The default's first sweep: pass rate 66, 64, 61, 64 of 128 (noise); KL held to 0.5 s.e. but falling 4 nats.
    summary = beta_sweep(
        tmp_path,
        [(0.01, None, 66, 11.3, 0.1), (0.05, None, 64, 10.0, 0.5), (0.1, None, 61, 9.0, 1.0), (0.5, None, 64, 7.0, 5)],
    )
    clauses = dict(clause.split(": ", 1) for clause in summary["reading"].rstrip(".").split("; "))
    assert clauses["pass rate"] == "no difference beyond noise, 0.477-0.516 +/- 0.085"
    assert clauses["KL"] == "falls with beta, 11.3 -> 7.00"
    assert clauses["reward accuracy"] == "no difference beyond noise, 0.953 +/- 0.056"
    assert clauses["margins"] == "0.100-5.00, no noise estimate (one run per beta)"  # TRL logs means only
    assert list(clauses)[:4] == ["pass rate", "right content", "win rate", "KL"]  # behaviour first
    # dpo+sft: the summary says beta reaches one of its two terms, and how to sweep that term alone.
    assert "beta scales the sigmoid term only" in summary["loss_note"]
    assert 'make sweep-beta method=dpo ARGS="method.loss_type=[sigmoid]"' in summary["loss_note"]
    assert beta_sweep(tmp_path / "plain", [(0.1, None, 1, 1.0, 0.1)], loss_type=["sigmoid"])["loss_note"] is None


def test_seeds_make_one_setting_per_beta_whose_noise_is_the_spread_over_seeds(tmp_path):
    jobs = [
        (beta, seed, passed + delta, kl + delta / 10, margin * (1 + delta / 20))
        for beta, passed, kl, margin in ((0.01, 64, 11.0, 0.2), (0.1, 64, 8.0, 1.0), (1.0, 64, 5.0, 8.0))
        for seed, delta in ((1, -2), (2, 0), (3, 2))
    ]
    summary = beta_sweep(tmp_path, jobs)
    assert [(g["beta"], g["jobs"], g["seeds"]) for g in summary["groups"]] == [
        (0.01, ["0", "1", "2"], [1, 2, 3]),
        (0.1, ["3", "4", "5"], [1, 2, 3]),
        (1.0, ["6", "7", "8"], [1, 2, 3]),
    ]
    group = summary["groups"][0]["estimates"]
    assert group["pass_rate"].over == "seeds" and group["pass_rate"].value == pytest.approx(0.5)
    assert group["pass_rate"].se == pytest.approx(2 / 128 / 3**0.5)
    clauses = dict(clause.split(": ", 1) for clause in summary["reading"].rstrip(".").split("; "))
    assert clauses["pass rate"].startswith("no difference beyond noise")
    assert clauses["margins"] == "rises with beta, 0.200 -> 8.00"  # seeds give the margins a noise estimate
    assert clauses["KL"] == "falls with beta, 11.0 -> 5.00"

    sweep.write_outputs(summary, tmp_path)
    by_setting = read_csv(tmp_path / "summary_by_setting.csv")
    assert [(r["setting"], r["runs"], r["seeds"]) for r in by_setting][0] == ("method.beta=0.01", "3", "1;2;3")
    assert float(by_setting[0]["pass_rate_se"]) == pytest.approx(2 / 128 / 3**0.5)
    low, high = float(by_setting[0]["pass_rate_low"]), float(by_setting[0]["pass_rate_high"])
    assert high - low == pytest.approx(2 * 4.302653 * 2 / 128 / 3**0.5, rel=1e-5)  # t with 2 degrees of freedom
    markdown = (tmp_path / "summary.md").read_text()
    assert markdown.splitlines()[2].startswith("**Reading:** pass rate: no difference beyond noise")
    assert "0.500 ± 0.009" in markdown  # mean ± standard error over seeds


def test_jobs_that_differ_in_more_than_beta_get_no_reading(tmp_path):
    for number, (beta, lr) in enumerate(((0.1, "1e-4"), (0.5, "3e-4"))):
        make_job(
            tmp_path,
            str(number),
            [f"method.beta={beta}", f"train.learning_rate={lr}"],
            {"status": "completed", "beta": beta},
            evaluation(64, 10.0),
        )
    assert "differ in more than beta" in sweep.summarize(tmp_path)["reading"]
