"""scripts/plot_frontier.py on two tiny runs (made by compare_methods.py) and on hand-made points."""

import csv
import json
import subprocess
import sys

import pytest
import yaml

from prefopt.reports import method_label
from tests.conftest import REPO, load_script
from tests.scripts.compared_runs import METHODS, SEED, compared_runs

SCRIPT = REPO / "scripts" / "plot_frontier.py"


def test_frontier_plot_and_csv_hold_each_runs_eval_json_values():
    sweep, _, _ = compared_runs()
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(sweep), "--json"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    png = (sweep / "frontier.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    with (sweep / "frontier.csv").open() as f:
        rows = list(csv.DictReader(f))
    runs = sorted(f"{method}/seed-{SEED}" for method in METHODS)
    assert sorted(row["runs"] for row in rows) == runs  # one run per method: one point each
    for row in rows:
        evaluation = json.loads((sweep / row["runs"] / "eval.json").read_text())["generation"]
        metrics = json.loads((sweep / row["runs"] / "metrics.json").read_text())
        method = yaml.safe_load((sweep / row["runs"] / "config.yaml").read_text())["method"]
        assert row["method"] == method_label(method) and float(row["beta"]) == metrics["beta"]  # dpo+sft: its loss
        assert row["n"] == "1" and row["kl_se"] == row["pass_rate_se"] == ""  # no error bars from a single run
        assert float(row["kl"]) == evaluation["kl_policy_reference"]
        assert float(row["pass_rate"]) == evaluation["pass_rate"]["policy"]
        assert float(row["reference_pass_rate"]) == evaluation["pass_rate"]["reference"]
    assert [p["runs"] for p in report["points"]] == [[row["runs"]] for row in rows]
    assert sorted(r["run"] for r in report["runs"]) == runs


def write_run(run_dir, method, beta, seed, kl, pass_rate, reference_pass_rate=0.0):
    """A finished run as plot_frontier.py reads it: config.yaml, metrics.json and eval.json."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"method:\n  name: {method}\n  loss_type: [sigmoid]\ntrain:\n  seed: {seed}\n")
    (run_dir / "metrics.json").write_text(json.dumps({"method": method, "beta": beta, "status": "completed"}))
    generation = {"kl_policy_reference": kl, "pass_rate": {"policy": pass_rate, "reference": reference_pass_rate}}
    (run_dir / "eval.json").write_text(json.dumps({"generation": generation}))


def test_seeds_of_one_beta_make_one_point_with_mean_and_standard_error(tmp_path):
    # A sweep over beta x seed, as `make sweep-beta seeds=1,2,3` lays it out: one numbered folder per job.
    jobs = [
        (0.01, 1, 9.0, 0.25),
        (0.01, 2, 8.0, 0.1875),
        (0.01, 3, 10.0, 0.3125),
        (0.5, 1, 3.0, 0.0625),
        (0.5, 2, 4.0, 0.0),
    ]
    for num, (beta, seed, kl, rate) in enumerate(jobs):
        write_run(tmp_path / str(num), "dpo", beta, seed, kl, rate)
    assert load_script("scripts/plot_frontier.py").main([str(tmp_path)]) == 0
    with (tmp_path / "frontier.csv").open() as f:
        rows = {row["beta"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == ["0.01", "0.5"]
    low, high = rows["0.01"], rows["0.5"]
    assert low["n"] == "3" and low["runs"] == "0;1;2" and high["n"] == "2" and high["runs"] == "3;4"
    assert abs(float(low["kl"]) - 9.0) < 1e-12 and abs(float(low["pass_rate"]) - 0.25) < 1e-12
    # sample standard deviation (n - 1) over sqrt(n): kl 1/sqrt(3); pass rate 0.0625/sqrt(3)
    assert abs(float(low["kl_se"]) - 1 / 3**0.5) < 1e-12
    assert abs(float(low["pass_rate_se"]) - 0.0625 / 3**0.5) < 1e-12
    assert abs(float(high["kl"]) - 3.5) < 1e-12 and abs(float(high["kl_se"]) - 0.5) < 1e-12
    assert abs(float(high["pass_rate"]) - 0.03125) < 1e-12 and abs(float(high["pass_rate_se"]) - 0.03125) < 1e-12
    assert low["on_frontier"] == high["on_frontier"] == "True"  # the frontier is drawn through the means
    assert (tmp_path / "frontier.png").read_bytes()[:4] == b"\x89PNG"


def test_runs_are_grouped_by_method_as_well_as_beta(tmp_path):
    write_run(tmp_path / "0", "dpo", 0.1, 1, 5.0, 0.1)
    write_run(tmp_path / "1", "ipo", 0.1, 1, 6.0, 0.2)
    write_run(tmp_path / "2", "dpo", 0.1, 2, 7.0, 0.3)
    points = load_script("scripts/plot_frontier.py").group_points(
        load_script("scripts/plot_frontier.py").read_points(tmp_path)
    )
    assert [(p["method"], p["n"], p["runs"]) for p in points] == [("dpo", 2, ["0", "2"]), ("ipo", 1, ["1"])]
    assert points[1]["kl_se"] is None and points[1]["pass_rate_se"] is None


def test_frontier_keeps_the_runs_nothing_beats_on_both_axes():
    points = [
        {"kl": 0.5, "pass_rate": 0.2},
        {"kl": 1.0, "pass_rate": 0.6},
        {"kl": 2.0, "pass_rate": 0.5},
        {"kl": 0.5, "pass_rate": 0.1},
        {"kl": 3.0, "pass_rate": 0.9},
    ]
    load_script("scripts/plot_frontier.py").mark_frontier(points)
    assert [p["on_frontier"] for p in points] == [True, True, False, False, True]


@pytest.mark.parametrize(
    ("method", "label"),
    [
        ("name: dpo\n  loss_type: [sigmoid, sft]", "dpo+sft"),
        ("name: my_dpo\n  loss_type: [sigmoid, sft]", "my_dpo+sft"),  # a copy is labelled as its original
        ("name: ipo\n  loss_type: [ipo]", "ipo"),
        ("name: kto\n  loss_type: kto", "kto"),
        ("name: orpo", "orpo"),
    ],
)
def test_extra_loss_terms_are_spelled_out_in_the_label(tmp_path, method, label):
    (tmp_path / "config.yaml").write_text(f"method:\n  {method}\n")
    assert load_script("scripts/plot_frontier.py").method_label(tmp_path, {"method": "?"}) == label


def test_a_sweep_without_evaluations_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "metrics.json").write_text('{"status": "completed"}')
    assert load_script("scripts/plot_frontier.py").main([str(tmp_path)]) == 2
    assert "no run folder with metrics.json and a generation evaluation in eval.json" in capsys.readouterr().err
    assert not (tmp_path / "frontier.png").exists()
