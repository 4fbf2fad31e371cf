"""scripts/plot_frontier.py on two tiny runs (made by compare_methods.py); hand-made points are in
tests/prefopt/reports/test_frontier.py."""

import csv
import json
import subprocess
import sys

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
        assert row["n"] == "1" and float(row["kl"]) == evaluation["kl_policy_reference"]
        # A single run's point has its own noise: KL's standard error over answers, the pass rate's Wilson interval.
        assert float(row["kl_se"]) == evaluation["kl_policy_reference_se"]
        assert float(row["pass_rate_low"]) <= float(row["pass_rate"]) < float(row["pass_rate_high"])
        assert float(row["pass_rate"]) == evaluation["pass_rate"]["policy"]
        assert float(row["reference_pass_rate"]) == evaluation["pass_rate"]["reference"]
    assert [p["runs"] for p in report["points"]] == [[row["runs"]] for row in rows]
    assert sorted(r["run"] for r in report["runs"]) == runs


def test_a_sweep_without_evaluations_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "metrics.json").write_text('{"status": "completed"}')
    assert load_script("scripts/plot_frontier.py").main([str(tmp_path)]) == 2
    assert "no run folder with metrics.json and an eval.json holding the answers' KL" in capsys.readouterr().err
    assert not (tmp_path / "frontier.png").exists()
