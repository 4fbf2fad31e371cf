"""scripts/eval_harness.py on a run directory as train.py leaves it (tiny model, LoRA adapter moved off zero) with the
local tasks of tests/data/harness_tasks: eval.json gains a harness section and keeps the rest, W&B gets it, and
bad input stops before any model loads."""

import json

import pytest

from tests.conftest import REPO, load_script, offline_wandb_data
from tests.prefopt.evaluation.test_runs import fake_lora_run

TASKS = "tests/data/harness_tasks"


@pytest.fixture
def in_repo(monkeypatch):
    """The task YAMLs name their JSONL relative to the repository root, where make runs."""
    monkeypatch.chdir(REPO)


def test_json_output_is_the_harness_section_and_eval_json_keeps_its_other_sections(tmp_path, capsys, in_repo):
    run = tmp_path / "run"
    fake_lora_run(run, "logger=wandb")
    earlier = {"pairs": {"reward_accuracy": 0.75}, "generation": {"pass_rate": {"policy": 0.5}}, "method": "dpo"}
    (run / "eval.json").write_text(json.dumps(earlier))

    assert load_script("scripts/eval_harness.py").main([str(run), "--tasks", TASKS, "--limit", "8", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout
    written = json.loads((run / "eval.json").read_text())
    assert printed == {"harness": written["harness"]}
    assert {key: written[key] for key in earlier} == earlier
    harness = written["harness"]
    assert set(harness) == {"sums_answer", "sums_choice"}
    assert set(harness["sums_answer"]["metrics"]) == {"exact_match,none"}
    assert set(harness["sums_choice"]["metrics"]) == {"acc,none"}
    for entry in harness.values():
        assert entry["written_by"] == "scripts/eval_harness.py" and entry["n_samples"]["effective"] == 8
        for values in entry["metrics"].values():
            for who in ("reference", "policy"):
                assert 0.0 <= values[who] <= 1.0 and values["stderr"][who] >= 0.0
    # The adapter moved the policy off the reference: the log-likelihood task tells them apart.
    choice = harness["sums_choice"]["metrics"]["acc,none"]
    assert choice["policy"] != choice["reference"]

    needles = (b"eval/harness/sums_choice/acc,none/policy", b"eval/harness/table", b"eval-harness")
    data = offline_wandb_data(run, needles)
    for needle in needles:
        assert needle in data, needle


def test_tasks_already_scored_need_force_and_the_table_shows_both_models(tmp_path, capsys, in_repo):
    run = tmp_path / "run"
    fake_lora_run(run)
    first = {"harness": {"sums_choice": {"metrics": {}}}, "pairs": {"loss": 0.4}}
    (run / "eval.json").write_text(json.dumps(first))
    script = load_script("scripts/eval_harness.py")

    assert script.main([str(run), "--tasks", f"{TASKS}/sums_choice.yaml"]) == 2
    assert "already holds harness results for sums_choice: pass --force" in capsys.readouterr().err
    assert json.loads((run / "eval.json").read_text()) == first

    assert script.main([str(run), "--tasks", f"{TASKS}/sums_choice.yaml", "--limit", "2", "--force"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["task", "metric", "reference", "policy", "stderr", "(reference", "/", "policy)"]
    assert lines[3].split()[:2] == ["sums_choice", "acc,none"] and len(lines) == 4
    written = json.loads((run / "eval.json").read_text())
    assert written["pairs"] == {"loss": 0.4} and written["harness"]["sums_choice"]["n_samples"]["effective"] == 2


def test_a_folder_without_a_run_is_the_load_run_error(tmp_path, capsys):
    assert load_script("scripts/eval_harness.py").main([str(tmp_path), "--tasks", "gsm8k"]) == 2
    assert f"{tmp_path} is not a run directory: no config.yaml" in capsys.readouterr().err


@pytest.mark.slow
def test_an_unknown_task_stops_before_the_models_load(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    fake_lora_run(run)
    script = load_script("scripts/eval_harness.py")
    monkeypatch.setattr(script, "load_run", lambda run_dir: pytest.fail("the models were loaded"))
    assert script.main([str(run), "--tasks", "gsm8k,no_such_task_here"]) == 2
    err = capsys.readouterr().err
    assert "unknown harness task 'no_such_task_here'" in err and "lm-eval ls tasks" in err
