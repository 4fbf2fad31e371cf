"""Malformed input never crashes with a raw exception: every bad row is a RecipeError or a counted skip."""

import json
import random

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from prefopt.data.local import read_pairs
from prefopt.errors import RecipeError
from prefopt.validation import check_sections, validate
from tests.conftest import compose_config, recipe_and_setup

COLUMNS = {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}
JUNK = [
    None,
    0,
    3.5,
    True,
    [],
    {},
    [1, 2],
    [{"role": "user"}],
    [{"content": "x"}],
    [{"role": 7, "content": "x"}],
    [{"role": "robot", "content": "x"}],
    "",
    "   ",
    "x" * 200_000,
    "ok",
    {"role": "user", "content": "x"},
    [{"role": "assistant", "content": None}],
    "\u0000\ud7ff",
    "é" * 10,
]


def _random_row(rng: random.Random) -> dict:
    row = {"prompt": "What is 1 + 1?", "chosen": "2", "rejected": "3"}
    for field in rng.sample(list(row), rng.randint(1, 3)):
        if rng.random() < 0.15:
            del row[field]
        else:
            row[field] = rng.choice(JUNK)
    return row


@pytest.mark.parametrize("seed", range(40))
def test_random_malformed_rows_give_a_clear_error_or_a_counted_result(tmp_path, seed):
    rng = random.Random(seed)
    rows = [{"prompt": f"q{i}", "chosen": "a", "rejected": "b"} for i in range(5)] + [
        _random_row(rng) for _ in range(3)
    ]
    rng.shuffle(rows)
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    try:
        result = read_pairs(path, COLUMNS, max_dropped_fraction=0.5)
    except RecipeError as exc:
        assert "pairs.jsonl" in str(exc) and ("line" in str(exc) or "column" in str(exc)), str(exc)
        return
    assert 1 <= len(result) <= len(rows)  # accepted: only well-formed rows, identical pairs dropped and counted
    for row in result:
        assert all(row[field] for field in ("prompt", "chosen", "rejected"))


def test_non_utf8_and_truncated_lines_in_jsonl(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "\xff\xfe", "chosen"')
    with pytest.raises(RecipeError, match=r"bad\.jsonl, line 2"):
        read_pairs(path, COLUMNS)


@pytest.mark.parametrize(
    "override",
    [
        "train.max_steps=abc",
        "train.max_steps=[1,2]",
        "method.beta=",
        "method.beta=1e",
        "train.learning_rate={a: 1}",
        "method.loss_type=42",
        "train.per_device_train_batch_size=-",
        "dataset=nonexistent",
        "method.betta=0.1",
        "train.max_steps=1.5",
        "peft.r=sixteen",
        "train=3",
    ],
)
def test_malformed_overrides_give_a_clear_error(override):
    try:
        cfg = compose_config(override)
        check_sections(cfg)
        validate(cfg, *recipe_and_setup(cfg))
    except (RecipeError, HydraException, OmegaConfBaseException) as exc:
        assert str(exc).strip()
        return
    pytest.fail(f"{override} was accepted")
