"""prefopt/reports/frontier.py on hand-made runs: points over seeds, grouping by method and beta, the frontier,
labels, and the noise of a single run."""

import csv
import json

import pytest

from prefopt.reports import frontier
from prefopt.reports.stats import Estimate


def write_run(run_dir, method, beta, seed, kl, pass_rate, reference_pass_rate=0.0, prompts=None, kl_se=None):
    """A finished run as plot_frontier.py reads it: config.yaml, metrics.json and eval.json."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"method:\n  name: {method}\n  loss_type: [sigmoid]\ntrain:\n  seed: {seed}\n")
    (run_dir / "metrics.json").write_text(json.dumps({"method": method, "beta": beta, "status": "completed"}))
    generation = {
        "kl_policy_reference": kl,
        "kl_policy_reference_se": kl_se,
        "num_prompts": prompts,
        "pass_rate": {"policy": pass_rate, "reference": reference_pass_rate},
    }
    (run_dir / "eval.json").write_text(json.dumps({"generation": generation}))


def write_points(sweep_dir):
    points = frontier.group_points(frontier.read_runs(sweep_dir))
    frontier.plot(points, frontier.read_runs(sweep_dir), sweep_dir / "frontier.png")
    frontier.write_points_csv(points, sweep_dir / "frontier.csv")
    with (sweep_dir / "frontier.csv").open() as f:
        return points, list(csv.DictReader(f))


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
        write_run(tmp_path / str(num), "dpo", beta, seed, kl, rate, prompts=16, kl_se=0.5)
    _, written = write_points(tmp_path)
    rows = {row["beta"]: row for row in written}
    assert sorted(rows) == ["0.01", "0.5"]
    low, high = rows["0.01"], rows["0.5"]
    assert low["n"] == "3" and low["runs"] == "0;1;2" and high["n"] == "2" and high["runs"] == "3;4"
    assert abs(float(low["kl"]) - 9.0) < 1e-12 and abs(float(low["pass_rate"]) - 0.25) < 1e-12
    # sample standard deviation (n - 1) over sqrt(n), not the runs' own noise: kl 1/sqrt(3); pass rate 0.0625/sqrt(3)
    assert abs(float(low["kl_se"]) - 1 / 3**0.5) < 1e-12
    assert abs(float(low["pass_rate_se"]) - 0.0625 / 3**0.5) < 1e-12
    assert float(low["kl_high"]) - 9.0 == pytest.approx(4.302653 / 3**0.5, rel=1e-5)  # Student's t, 2 dof
    assert abs(float(high["kl"]) - 3.5) < 1e-12 and abs(float(high["kl_se"]) - 0.5) < 1e-12
    assert abs(float(high["pass_rate"]) - 0.03125) < 1e-12 and abs(float(high["pass_rate_se"]) - 0.03125) < 1e-12
    assert float(high["pass_rate_low"]) == 0.0  # a rate's interval stops at 0
    assert low["on_frontier"] == high["on_frontier"] == "True"  # the frontier is drawn through the means
    assert (tmp_path / "frontier.png").read_bytes()[:4] == b"\x89PNG"


def test_a_single_run_keeps_its_own_noise(tmp_path):
    write_run(tmp_path / "0", "dpo", 0.1, 1, 11.0, 0.5, prompts=128, kl_se=0.5)
    write_run(tmp_path / "1", "dpo", 0.5, 1, 5.0, 0.25)  # an eval.json without counts: no noise known
    _, (row, bare) = write_points(tmp_path)
    assert float(row["kl_se"]) == 0.5 and float(row["pass_rate_low"]) == pytest.approx(0.4146, abs=1e-4)
    assert bare["kl_se"] == bare["pass_rate_low"] == ""


def test_runs_are_grouped_by_method_as_well_as_beta(tmp_path):
    write_run(tmp_path / "0", "dpo", 0.1, 1, 5.0, 0.1)
    write_run(tmp_path / "1", "ipo", 0.1, 1, 6.0, 0.2)
    write_run(tmp_path / "2", "dpo", 0.1, 2, 7.0, 0.3)
    points = frontier.group_points(frontier.read_runs(tmp_path))
    assert [(p["method"], p["n"], p["runs"]) for p in points] == [("dpo", 2, ["0", "2"]), ("ipo", 1, ["1"])]
    assert points[1]["kl"].se is None and points[1]["pass_rate"].se is None


def test_frontier_keeps_the_runs_nothing_beats_on_both_axes():
    points = [
        {"kl": Estimate(kl), "pass_rate": Estimate(rate)}
        for kl, rate in ((0.5, 0.2), (1.0, 0.6), (2.0, 0.5), (0.5, 0.1), (3.0, 0.9))
    ]
    frontier.mark_frontier(points)
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
    assert frontier.run_label(tmp_path, {"method": "?"}) == label
