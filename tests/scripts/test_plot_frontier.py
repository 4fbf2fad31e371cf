"""scripts/plot_frontier.py on two tiny runs (made by compare_methods.py) and on hand-made points."""

import csv
import json
import subprocess
import sys

from tests.conftest import REPO
from tests.scripts.compared_runs import METHODS, compared_runs

SCRIPT = REPO / "scripts" / "plot_frontier.py"


def load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("plot_frontier_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_frontier_plot_and_csv_hold_each_runs_eval_json_values():
    sweep, _, _ = compared_runs()
    result = subprocess.run([sys.executable, str(SCRIPT), str(sweep), "--json"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    png = (sweep / "frontier.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    with (sweep / "frontier.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["run"] for row in rows) == sorted(METHODS)
    for row in rows:
        evaluation = json.loads((sweep / row["run"] / "eval.json").read_text())["generation"]
        metrics = json.loads((sweep / row["run"] / "metrics.json").read_text())
        assert row["method"] == metrics["method"] and float(row["beta"]) == metrics["beta"]
        assert float(row["kl"]) == evaluation["kl_policy_reference"]
        assert float(row["pass_rate"]) == evaluation["pass_rate"]["policy"]
        assert float(row["reference_pass_rate"]) == evaluation["pass_rate"]["reference"]
    assert [p["run"] for p in report["points"]] == [row["run"] for row in rows]


def test_frontier_keeps_the_runs_nothing_beats_on_both_axes():
    points = [{"kl": 0.5, "pass_rate": 0.2}, {"kl": 1.0, "pass_rate": 0.6}, {"kl": 2.0, "pass_rate": 0.5},
              {"kl": 0.5, "pass_rate": 0.1}, {"kl": 3.0, "pass_rate": 0.9}]
    load_script().mark_frontier(points)
    assert [p["on_frontier"] for p in points] == [True, True, False, False, True]


def test_dpo_with_an_sft_term_is_labelled_as_such(tmp_path):
    (tmp_path / "config.yaml").write_text("method:\n  name: dpo\n  loss_type: [sigmoid, sft]\n")
    assert load_script().method_label(tmp_path, {"method": "dpo"}) == "dpo+sft"


def test_a_sweep_without_evaluations_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "metrics.json").write_text('{"status": "completed"}')
    assert load_script().main([str(tmp_path)]) == 2
    assert "no run folder with metrics.json and a generation evaluation in eval.json" in capsys.readouterr().err
    assert not (tmp_path / "frontier.png").exists()
