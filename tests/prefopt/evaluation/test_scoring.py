"""prefopt/evaluation/scoring.py: the verifier's passes, wins and lengths counted by hand, and the held-out prompts."""

import json

import pytest

from prefopt.data import builtin
from prefopt.errors import RecipeError
from prefopt.evaluation.scoring import heldout_tasks, read_tasks, score_answers
from tests.conftest import compose_config


def test_score_answers_counts_passes_wins_and_length():
    tasks = [
        builtin.Task("sum", "What is 2 + 3?", "5"),
        builtin.Task("capital", "Capital of Peru?", "Lima"),
        builtin.Task("count", "Name exactly 2 colors", "", n=2),
        builtin.Task("uppercase", "word", "APPLE"),
    ]
    policy = ["5", "lima.", "red, blue", "apple"]
    reference = ["The answer is 5.", "Lima", "red", "apple"]
    scores, policy_pass, reference_pass = score_answers(tasks, policy, reference)
    assert (policy_pass, reference_pass) == ([True, True, True, False], [False, True, False, False])
    assert scores["pass_rate"] == {"reference": 0.25, "policy": 0.75}
    assert (scores["wins"], scores["losses"], scores["ties"]) == (2, 0, 2)
    assert scores["win_rate"] == (2 + 0.5 * 2) / 4
    assert scores["pass_rate_by_kind"]["policy"] == {"capital": 1.0, "count": 1.0, "sum": 1.0, "uppercase": 0.0}
    # Right content ignores the format: the reference's "The answer is 5." and "Lima" have it, "red" has 1 of 2 colors.
    assert scores["right_content_rate"] == {"reference": 0.5, "policy": 0.75}
    assert scores["right_content_rate_by_kind"]["reference"] == {
        "capital": 1.0,
        "count": 0.0,
        "sum": 1.0,
        "uppercase": 0.0,
    }
    assert scores["mean_length_chars"] == {"reference": (16 + 4 + 3 + 5) / 4, "policy": (1 + 5 + 9 + 5) / 4}


def test_heldout_prompts_are_distinct_and_never_trained_on():
    cfg = compose_config("dataset.num_train=64", "dataset.num_eval=64")
    tasks = heldout_tasks(cfg.dataset, 32)
    train_prompts = {r["prompt"][0]["content"] for r in builtin.build_pairs(64, 64)["train"]}
    assert len(tasks) == 32 and len({t.prompt for t in tasks}) == 32
    assert {t.kind for t in tasks} == set(builtin.KINDS) and not train_prompts & {t.prompt for t in tasks}


def test_dataset_eval_split_validation_scores_the_validation_prompts():
    cfg = compose_config("dataset.eval_split=validation")
    tasks = heldout_tasks(cfg.dataset, 1000)
    assert {t.prompt for t in tasks} == {t.prompt for t in builtin.split_tasks(0)["validation"]}
    assert len(heldout_tasks(compose_config().dataset, 1000)) == len(builtin.split_tasks(0)["test"]) == 128


def test_read_tasks_takes_prompts_of_your_own_and_names_the_bad_row(tmp_path):
    rows = [
        {
            "kind": "capital",
            "prompt": "What is the capital of Chad? Answer with the city name only.",
            "answer": "N'Djamena",
        },
        {"kind": "count", "prompt": "Name exactly 7 colors, separated by commas, and nothing else.", "n": 7},
    ]
    path = tmp_path / "transfer.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tasks = read_tasks(path)
    assert tasks == [
        builtin.Task("capital", rows[0]["prompt"], "N'Djamena"),
        builtin.Task("count", rows[1]["prompt"], "", 7),
    ]
    assert builtin.verify(tasks[0], "N'Djamena.") and not builtin.verify(tasks[1], "red, blue")
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"kind": "sum", "prompt": "What is 70 + 80?"}) + "\n")
    with pytest.raises(RecipeError, match=r"transfer.jsonl, line 2: a sum prompt needs 'answer'"):
        read_tasks(path)
    path.write_text(json.dumps({**rows[0], "kind": "spelling"}) + "\n")
    with pytest.raises(RecipeError, match=r"transfer.jsonl, line 1: 'kind' is 'spelling'"):
        read_tasks(path)
