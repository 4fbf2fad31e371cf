"""prefopt/evaluation/scoring.py: the verifier's passes, wins and lengths counted by hand, and the held-out prompts."""

from prefopt.data import builtin
from prefopt.evaluation.scoring import heldout_tasks, score_answers
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
    assert scores["mean_length_chars"] == {"reference": (16 + 4 + 3 + 5) / 4, "policy": (1 + 5 + 9 + 5) / 4}


def test_heldout_prompts_are_distinct_and_never_trained_on():
    cfg = compose_config("dataset.num_train=64", "dataset.num_eval=64")
    tasks = heldout_tasks(cfg.dataset, 32)
    train_prompts = {r["prompt"][0]["content"] for r in builtin.build_pairs(64, 64)["train"]}
    assert len(tasks) == 32 and len({t.prompt for t in tasks}) == 32
    assert {t.kind for t in tasks} == set(builtin.KINDS) and not train_prompts & {t.prompt for t in tasks}
