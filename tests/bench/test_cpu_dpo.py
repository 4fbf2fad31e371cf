"""bench/cpu_dpo.py end to end on the tiny random model: three rows, consistent numbers, padding fractions."""

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import REPO

ROWS = ("recipe", "plain_trl", "floor")


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "cpu_dpo.py"), "--model", "tiny-random", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )


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
    setups = result["ragged"]["setups"]
    fraction = {name: setup["mean_batch_fraction"] for name, setup in setups.items()}
    # TRL's layout: grouping helps but cannot beat each pair's own fraction; shared-prompt rows go past it.
    assert fraction["random"] < 0.7 < 0.85 < fraction["group_by_length"] <= result["ragged"]["pair_bound"] + 1e-9, (
        setups
    )
    assert fraction["group_by_length+shared"] > max(0.9, result["ragged"]["pair_bound"]), setups
    assert setups["random"]["positions_vs_trl"] == 1
    assert setups["group_by_length+shared"]["positions_vs_trl"] < 0.7 * setups["group_by_length"]["positions_vs_trl"]


def test_table_names_every_row():
    out = run_bench("--steps", "1", "--warmup", "0").stdout
    assert "recipe / floor:" in out and "plain TRL / recipe:" in out
    for name in ROWS:
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
