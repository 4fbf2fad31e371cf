"""The judge's win rates where results are read: prefopt/reports/runs.py reads them from eval.json's judge section with
their bootstrap intervals, and the sweep summary, the method comparison and the frontier show them (the frontier
plots the length-controlled one against KL where there is no verifier)."""

import csv
import json

import pytest
import yaml

from prefopt.errors import RecipeError
from prefopt.reports import compare, frontier, runs, stats, sweep


def judged_eval(win, lc, kl=2.0, name="reward_model", prompts=128, half=0.08):
    """eval.json of a run on data without a verifier, judged by a reward model."""
    return {
        "generation": None,
        "answers": {"num_prompts": prompts, "kl_policy_reference": kl, "kl_policy_reference_se": 0.25},
        "judge": {
            "name": name,
            "num_prompts": prompts,
            "win_rate": win,
            "win_rate_ci_low": win - half,
            "win_rate_ci_high": win + half,
            "lc_win_rate": lc,
            "lc_win_rate_ci_low": lc - half,
            "lc_win_rate_ci_high": lc + half,
            "error": None,
        },
    }


def write_run(run_dir, beta, seed, evaluation, method="dpo"):
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"method.beta={beta}", f"train.seed={seed}"]))
    config = {"method": {"name": method, "beta": beta, "loss_type": ["sigmoid"]}, "train": {"seed": seed}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = {"status": "completed", "beta": beta, "method": method, "eval_loss": 0.5, "wall_time_s": 10.0}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "eval.json").write_text(json.dumps(evaluation))


def test_the_judges_win_rates_are_read_with_their_bootstrap_interval():
    found = runs.judge_estimates(judged_eval(0.7, 0.6))
    lc = found["judge_lc_win_rate"]
    assert (lc.value, lc.n, lc.over, lc.rate) == (0.6, 128, "prompts", True)
    assert (lc.low, lc.high) == pytest.approx((0.52, 0.68))
    assert lc.se == pytest.approx(0.08 / stats.Z95)  # read off the interval's width
    assert found["judge_win_rate"].value == 0.7
    # The verifier's win rate is the generation section's; a failed judge has no numbers.
    verifier = judged_eval(0.7, 0.6, name="verifier")
    failed = {"judge": {"name": "llm", "model": "m", "error": "cannot connect"}}
    for evaluation in (verifier, failed, None):
        assert all(e.value is None for e in runs.judge_estimates(evaluation).values())


def test_the_sweep_summary_has_the_judges_columns_and_reads_them_across_beta(tmp_path):
    for job, (beta, lc) in enumerate(((0.01, 0.85), (0.1, 0.6), (1.0, 0.3))):
        write_run(tmp_path / str(job), beta, 1, judged_eval(lc + 0.05, lc))
    summary = sweep.summarize(tmp_path)
    assert "judge_win_rate" in summary["metrics"] and "judge_lc_win_rate" in summary["metrics"]
    assert "pass_rate" not in summary["metrics"] and summary["rows"][0]["prompts"] == 128
    assert summary["reading"].startswith("judge LC win rate: falls with beta, 0.850 -> 0.300; judge win rate: falls")
    assert "; KL: " in summary["reading"]  # the answers' KL, with its standard error
    sweep.write_outputs(summary, tmp_path)
    rows = {r["job"]: r for r in csv.DictReader((tmp_path / "summary.csv").open())}
    assert float(rows["1"]["judge_lc_win_rate"]) == 0.6 and float(rows["1"]["judge_lc_win_rate_low"]) == pytest.approx(
        0.52
    )
    assert "judge LC win rate" in (tmp_path / "summary.md").read_text()
    assert "0.600 (0.520-0.680)" in sweep.format_table(summary)


def test_compare_methods_shows_the_judge_only_where_a_run_has_one(tmp_path):
    judged, plain = tmp_path / "dpo", tmp_path / "orpo"
    write_run(judged, 0.1, 1, judged_eval(0.7, 0.55))
    write_run(plain, 0.1, 1, {"generation": None, "answers": {"num_prompts": 128}})
    rows = compare.summarize(
        [compare.read_run("dpo", 1, judged, [judged]), compare.read_run("orpo", 1, plain, [plain])]
    )
    table = compare.format_table(rows)
    assert "judge LC win rate" in table and "0.550 (0.470-0.630)" in table
    assert rows[1]["judge_lc_win_rate"] is None
    assert "judge win rate" not in compare.format_table(rows[1:])  # no judge anywhere: no judge columns


def test_without_a_verifier_the_frontier_plots_the_judges_lc_win_rate_against_kl(tmp_path, capsys):
    write_run(tmp_path / "a", 0.01, 1, judged_eval(0.9, 0.8, kl=6.0))
    write_run(tmp_path / "b", 0.1, 1, judged_eval(0.7, 0.6, kl=2.0))
    write_run(tmp_path / "c", 0.5, 1, judged_eval(0.6, 0.55, kl=3.0))  # beaten by b on both axes
    write_run(tmp_path / "d", 1.0, 1, {"generation": None, "answers": {"num_prompts": 128, "kl_policy_reference": 1}})
    found = frontier.read_runs(tmp_path)
    assert frontier.y_metric(found) == "judge_lc_win_rate" and [r["run"] for r in found] == ["a", "b", "c"]
    assert "skipped" in capsys.readouterr().err
    points = frontier.group_points(found)
    assert [p["on_frontier"] for p in points] == [True, True, False]
    assert points[1]["kl"].se == 0.25  # the answers' KL with its standard error
    frontier.plot(points, found, tmp_path / "frontier.png")
    frontier.write_points_csv(points, tmp_path / "frontier.csv")
    rows = list(csv.DictReader((tmp_path / "frontier.csv").open()))
    assert float(rows[1]["judge_lc_win_rate"]) == 0.6 and rows[1]["pass_rate"] == ""
    assert "judge_lc_win_rate" in frontier.format_table(points)
    assert (tmp_path / "frontier.png").read_bytes()[:4] == b"\x89PNG"


def test_a_sweep_with_neither_a_pass_rate_nor_a_judge_says_how_to_add_the_judge(tmp_path):
    write_run(tmp_path / "a", 0.1, 1, {"generation": None, "answers": {"num_prompts": 8, "kl_policy_reference": 1}})
    with pytest.raises(RecipeError, match=r"make eval run=<run dir> judge=reward_model"):
        frontier.read_runs(tmp_path)
