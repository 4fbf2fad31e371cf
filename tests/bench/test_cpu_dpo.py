"""bench/cpu_dpo.py end to end on the tiny random model: three rows, consistent numbers, padding fractions."""

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import REPO

ROWS = ("recipe", "plain_trl", "floor")


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bench" / "cpu_dpo.py"), "--model", "tiny-random", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600, check=True)


def test_json_has_three_rows_and_their_ratios():
    result = json.loads(run_bench("--steps", "2", "--ragged", "--json").stdout)  # stdout holds the JSON alone
    assert set(result["rows"]) == set(ROWS)
    for name in ROWS:
        row = result["rows"][name]
        for key in ("s_per_step", "tokens_per_s", "peak_rss_mib"):
            assert math.isfinite(row[key]) and row[key] > 0, (name, key, row[key])
        # tokens/s counts the same non-pad tokens in every row: the rows trained on the same batches
        assert row["tokens_per_s"] * row["s_per_step"] == pytest.approx(result["tokens_per_step"], rel=1e-9)
    rows, ratios = result["rows"], result["ratios"]
    assert ratios["recipe_over_floor"] == rows["recipe"]["s_per_step"] / rows["floor"]["s_per_step"]
    assert ratios["plain_over_recipe"] == rows["plain_trl"]["s_per_step"] / rows["recipe"]["s_per_step"]
    assert result["steps"] == 2 and result["pairs"] == 8 and 0 < result["non_pad_fraction"] <= 1
    ragged = result["ragged"]
    random, grouped = ragged["random"]["mean_batch_fraction"], ragged["group_by_length"]["mean_batch_fraction"]
    assert random < 0.7 < 0.85 < grouped <= ragged["pair_bound"] + 1e-9, ragged


def test_table_names_every_row():
    out = run_bench("--steps", "1", "--warmup", "0").stdout
    assert "recipe / floor:" in out and "plain TRL / recipe:" in out
    for name in ROWS:
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
