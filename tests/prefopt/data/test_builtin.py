import pytest

from prefopt.data import builtin
from prefopt.errors import RecipeError


def test_every_pair_is_verified_good_over_bad():
    pairs = builtin.build_pairs(num_train=200, num_eval=40, seed=3)
    for row in pairs["train"] + pairs["test"]:
        task = builtin.task_of(row)
        assert builtin.verify(task, row["chosen"][0]["content"])
        assert not builtin.verify(task, row["rejected"][0]["content"])


def test_train_validation_and_test_prompts_never_overlap_and_have_the_held_out_sizes():
    splits = builtin.split_tasks(seed=0)
    prompts = {split: [t.prompt for t in tasks] for split, tasks in splits.items()}
    for split in builtin.SPLITS:
        assert len(set(prompts[split])) == len(prompts[split]), split
    assert set(prompts["train"]).isdisjoint(prompts["test"])
    assert set(prompts["train"]).isdisjoint(prompts["validation"])
    assert set(prompts["validation"]).isdisjoint(prompts["test"])
    for split in ("test", "validation"):
        kinds = [t.kind for t in splits[split]]
        assert {kind: kinds.count(kind) for kind in builtin.KINDS} == builtin.HELD_OUT[split]
    assert len(splits["test"]) >= 128


def test_heldout_tasks_interleave_kinds_and_eval_split_picks_the_pairs_prompts():
    tasks = builtin.heldout_tasks("test", limit=8)
    assert [t.kind for t in tasks] == list(builtin.KINDS) * 2
    validation = {t.prompt for t in builtin.split_tasks(0)["validation"]}
    rows = builtin.build_pairs(8, 16, seed=0, eval_split="validation")["test"]
    assert {row["prompt"][0]["content"] for row in rows} <= validation
    with pytest.raises(RecipeError, match=r"dataset.eval_split='dev' \(built-in task\): use test or validation"):
        builtin.build_pairs(8, 8, eval_split="dev")


def test_pairs_are_deterministic_from_the_seed_and_cover_every_kind():
    assert builtin.build_pairs(16, 8, seed=1) == builtin.build_pairs(16, 8, seed=1)
    assert builtin.build_pairs(16, 8, seed=1) != builtin.build_pairs(16, 8, seed=2)
    assert {row["kind"] for row in builtin.build_pairs(8, 4, seed=0)["train"]} == set(builtin.KINDS)


def test_verifier_checks_content_and_format():
    add = builtin.Task("sum", "What is 2 + 3? Reply with only the number.", "5")
    assert builtin.verify(add, " 5.") and not builtin.verify(add, "The answer is 5") and not builtin.verify(add, "6")
    colors = builtin.Task("count", "Name exactly 3 colors...", "", n=3)
    assert builtin.verify(colors, "red, Blue, green")
    assert not builtin.verify(colors, "red, blue") and not builtin.verify(colors, "red, red, blue")
    capital = builtin.Task("capital", "What is the capital of France?", "Paris")
    assert builtin.verify(capital, "paris") and not builtin.verify(capital, "It is Paris.")


def test_right_content_is_weaker_than_verify_and_ignores_the_format():
    add = builtin.Task("sum", "What is 27 + 34? Reply with only the number.", "61")
    assert builtin.has_right_content(add, "27 + 34 = 61, of course") and not builtin.has_right_content(add, "610")
    capital = builtin.Task("capital", "What is the capital of Peru?", "Lima")
    assert builtin.has_right_content(capital, "It is lima.") and not builtin.has_right_content(capital, "Limassol")
    upper = builtin.Task("uppercase", "Write the word 'apple' in capital letters.", "APPLE")
    assert builtin.has_right_content(upper, "Here: APPLE") and not builtin.has_right_content(upper, "apple")
    colors = builtin.Task("count", "Name exactly 3 colors...", "", n=3)
    assert builtin.has_right_content(colors, "Sure: red, Blue and green!") and not builtin.has_right_content(
        colors, "red, blue"
    )
    for row in builtin.build_pairs(100, 20, seed=5)["train"]:
        assert builtin.has_right_content(builtin.task_of(row), row["chosen"][0]["content"])
