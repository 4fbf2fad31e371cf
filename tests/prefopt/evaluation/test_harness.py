"""prefopt/evaluation/harness.py with lm-evaluation-harness on the tiny random model and the local tasks of
tests/data/harness_tasks (a generation task scored by exact match, a log-likelihood one by accuracy): task names
resolve early with clear errors, reference and policy sit side by side under the harness's metric names, and
eval.json keeps everything it held."""

import json
from pathlib import Path

import pytest
from peft import get_peft_model

from prefopt.adapters import lora_config
from prefopt.errors import RecipeError
from prefopt.evaluation.harness import (
    HarnessSettings,
    HarnessTasks,
    format_harness,
    resolve_tasks,
    run_harness,
    side_by_side,
    write_harness,
)
from prefopt.evaluation.models import PolicyAndReference
from prefopt.models import load_model
from tests.conftest import REPO, compose_config
from tests.prefopt.evaluation.conftest import SMALL

TASKS = REPO / "tests" / "data" / "harness_tasks"


@pytest.fixture
def in_repo(monkeypatch):
    """The task YAMLs name their JSONL relative to the repository root, where make runs."""
    monkeypatch.chdir(REPO)


def test_a_policy_equal_to_its_reference_scores_the_same_under_the_harness_names(tokenizer, in_repo, tmp_path):
    cfg = compose_config(*SMALL)
    base = load_model(cfg.model, "fp32", seed=cfg.train.seed)
    policy = get_peft_model(base, lora_config(cfg.peft))  # LoRA B starts at zero: policy == reference
    tasks = resolve_tasks("tests/data/harness_tasks")
    section = run_harness(PolicyAndReference(policy), tokenizer, tasks, HarnessSettings(limit=4, batch_size=4))

    assert set(section) == {"sums_answer", "sums_choice"}
    assert set(section["sums_answer"]["metrics"]) == {"exact_match,none"}
    assert set(section["sums_choice"]["metrics"]) == {"acc,none"}
    for entry in section.values():
        assert entry["n_samples"] == {"original": 12, "effective": 4} and entry["num_fewshot"] == 0
        assert entry["top_level"] and entry["source"] == "tests/data/harness_tasks"
        assert entry["settings"]["limit"] == 4 and entry["settings"]["lm_eval_version"] == "0.4.13"
        for values in entry["metrics"].values():
            assert values["higher_is_better"] is True
            assert values["reference"] == values["policy"] and 0.0 <= values["policy"] <= 1.0
            assert values["stderr"]["reference"] == values["stderr"]["policy"] is not None

    (tmp_path / "eval.json").write_text(
        json.dumps({"pairs": {"loss": 0.5}, "generation": None, "harness": {"ifeval": {"metrics": {}}}})
    )
    written = write_harness(tmp_path, section)
    assert written == json.loads((tmp_path / "eval.json").read_text())
    assert written["pairs"] == {"loss": 0.5} and "generation" in written
    assert set(written["harness"]) == {"ifeval", "sums_answer", "sums_choice"}  # earlier tasks kept


def test_local_task_files_and_folders_resolve_without_the_harness_index(in_repo):
    folder = resolve_tasks("tests/data/harness_tasks")
    assert folder.names == ["sums_answer", "sums_choice"] and not folder.include_defaults
    one = resolve_tasks(f"{TASKS / 'sums_choice.yaml'}, tests/data/harness_tasks")
    assert one.names == ["sums_choice", "sums_answer"]  # no task twice: the harness refuses duplicates
    assert one.sources["sums_choice"] == str(TASKS / "sums_choice.yaml")


def test_bad_local_tasks_are_named(tmp_path):
    with pytest.raises(RecipeError, match="no task file or folder .*missing.yaml"):
        resolve_tasks(f"{tmp_path / 'missing.yaml'}")
    (tmp_path / "notes.yaml").write_text("description: not a task\n")
    with pytest.raises(RecipeError, match="notes.yaml is not a harness task config"):
        resolve_tasks(str(tmp_path / "notes.yaml"))
    with pytest.raises(RecipeError, match="holds no harness task YAML"):
        resolve_tasks(str(tmp_path))
    with pytest.raises(RecipeError, match="no harness tasks given"):
        resolve_tasks(" , ")


@pytest.fixture
def arc_index(monkeypatch):
    """The harness's own ARC task configs alone: indexing all ~15k of them takes 10-20 s (the slow script test does)."""
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    arc = Path(lm_eval.tasks.__file__).parent / "arc"
    monkeypatch.setattr(
        HarnessTasks, "task_manager", lambda self: TaskManager(include_path=str(arc), include_defaults=False)
    )


def test_an_unknown_harness_task_is_named_with_how_to_list_tasks(arc_index):
    assert resolve_tasks("arc_challenge,arc_*").names == ["arc_challenge", "arc_*"]
    with pytest.raises(RecipeError) as caught:
        resolve_tasks("arc_challenge,arc_challange")
    message = str(caught.value)
    assert "unknown harness task 'arc_challange'" in message and "Did you mean arc_challenge" in message
    assert "lm-eval ls tasks" in message and "local task YAML" in message


def _scores(acc, stderr):
    return {"alias": "x", "acc,none": acc, "acc_stderr,none": stderr}


def test_groups_and_missing_stderrs_side_by_side():
    output = {
        "results": {"mmlu_a": _scores(0.5, 0.1), "mmlu_b": _scores(0.25, "N/A")},
        "groups": {"mmlu": _scores(0.4, 0.05)},
        "group_subtasks": {"mmlu": ["mmlu_a", "mmlu_b"]},
        "higher_is_better": {"mmlu": {"acc": True}, "mmlu_a": {"acc": True}},
        "n-samples": {"mmlu_a": {"original": 10, "effective": 10}},
    }
    reference = {
        **output,
        "results": {"mmlu_a": _scores(0.3, 0.1), "mmlu_b": _scores(0.2, "N/A")},
        "groups": {"mmlu": _scores(0.25, 0.05)},
    }
    section = side_by_side(reference, output, HarnessTasks(["mmlu"], {"mmlu": "mmlu"}), {"limit": None})
    assert section["mmlu"]["subtasks"] == ["mmlu_a", "mmlu_b"] and section["mmlu"]["top_level"]
    assert section["mmlu"]["metrics"]["acc,none"]["reference"] == 0.25  # the group's own score, from "groups"
    assert section["mmlu_a"]["metrics"]["acc,none"] == {
        "reference": 0.3,
        "policy": 0.5,
        "stderr": {"reference": 0.1, "policy": 0.1},
        "higher_is_better": True,
    }
    assert section["mmlu_b"]["metrics"]["acc,none"]["stderr"] == {"reference": None, "policy": None}
    assert not section["mmlu_b"]["top_level"] and section["mmlu_b"]["source"] == "subtask"

    table = format_harness(section)
    assert table.splitlines()[2].split() == ["mmlu", "acc,none", "0.2500", "0.4000", "0.0500", "/", "0.0500"]
    assert "mmlu_a" not in table  # a group's subtasks only with all_tasks
    assert "mmlu_b" in format_harness(section, all_tasks=True) and "- / -" in format_harness(section, all_tasks=True)
