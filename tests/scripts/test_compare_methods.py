"""scripts/compare_methods.py: two methods, two steps each on the tiny model; every number in the table is the
runs' own (eval.json, metrics.json). Also checks what scripts/train.py leaves after training: eval.json and the
before/after table in train.log."""

import json

import pytest

from tests.conftest import load_script
from tests.scripts.compared_runs import METHODS, OVERRIDES, compared_runs

HEADER = [
    "method",
    "beta",
    "status",
    "pass rate before",
    "pass rate after",
    "reward accuracy",
    "KL to reference",
    "mean length (chars)",
    "wall time (s)",
]


def run_files(out, method):
    run = out / method
    return json.loads((run / "metrics.json").read_text()), json.loads((run / "eval.json").read_text()), run


def test_one_row_per_method_with_the_runs_own_numbers():
    out, report, _ = compared_runs()
    assert [row["method"] for row in report["rows"]] == METHODS
    assert set(OVERRIDES) <= set(report["overrides"])
    for row in report["rows"]:
        metrics, evaluation, run = run_files(out, row["method"])
        generation = evaluation["generation"]
        assert row["status"] == "completed" and row["run_dir"] == str(run)
        assert row["beta"] == metrics["beta"] and row["wall_time_s"] == metrics["wall_time_s"] > 0
        assert row["pass_before"] == generation["pass_rate"]["reference"] == 0.0  # a random model passes nothing
        assert row["pass_after"] == generation["pass_rate"]["policy"]
        assert row["reward_accuracy"] == evaluation["pairs"]["reward_accuracy"]
        assert row["kl"] == generation["kl_policy_reference"]
        assert row["mean_length"] == generation["mean_length_chars"]["policy"]


def test_compare_md_holds_the_table_and_compare_png_the_plot():
    out, report, _ = compared_runs()
    lines = (out / "compare.md").read_text().splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert [cell.strip() for cell in table[0].strip("|").split("|")] == HEADER
    assert len(table) == 2 + len(METHODS)
    for line, row in zip(table[2:], report["rows"]):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == row["method"] and cells[2] == "completed"
        assert float(cells[5]) == pytest.approx(row["reward_accuracy"], abs=5e-4)
        assert float(cells[6]) == pytest.approx(row["kl"], abs=5e-4)
    png = (out / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_train_py_writes_eval_json_and_prints_before_and_after():
    out, _, _ = compared_runs()
    dpo_metrics, dpo_eval, dpo_run = run_files(out, "dpo")
    assert dpo_eval["written_by"] == "scripts/train.py" and dpo_eval["settings"]["max_prompts"] == 6
    # DPO's pair metrics are the trainer's own final evaluation; ORPO's are computed against the base model.
    assert dpo_eval["pairs"]["source"] == "trl (metrics.json)"
    assert dpo_eval["pairs"]["reward_accuracy"] == dpo_metrics["eval_rewards/accuracies"]
    _, orpo_eval, _ = run_files(out, "orpo")
    assert orpo_eval["pairs"]["source"] == "prefopt.evaluation" and orpo_eval["pairs"]["num_pairs"] == 8
    log = (dpo_run / "train.log").read_text()
    table = log[log.index("held-out evaluation (eval.json)") :]
    for row in (
        "before (reference)",
        "after (policy)",
        "reward accuracy (8 pairs)",
        "pass rate (6 prompts, greedy)",
        "KL(policy || reference)",
    ):
        assert row in table, row


def test_unknown_method_is_refused_before_training(tmp_path, capsys):
    script = load_script("scripts/compare_methods.py")
    assert script.main(["--methods", "dpo,ppo", "--out", str(tmp_path / "out")]) == 2
    assert "--methods: unknown ppo; choose from dpo, dpo+sft, ipo, kto, orpo" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
