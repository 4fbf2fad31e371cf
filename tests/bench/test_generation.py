"""bench/generation.py end to end on the tiny random model: both ways in both modes, and greedy answers identical."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_both_ways_both_modes_and_the_greedy_answers_compared():
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "generation.py"), "--model", "tiny-random", "--prompts", "3"]
        + ["--samples", "2", "--max-new-tokens", "6", "--threads", "1", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    report = json.loads(result.stdout)  # stdout holds the JSON alone
    rows = {(row["mode"], row["way"]): row for row in report["rows"]}
    assert set(rows) == {(m, w) for m in ("greedy", "sampled") for w in ("one_at_a_time", "batched")}
    assert rows["greedy", "batched"]["answers"] == 3 and rows["sampled", "batched"]["answers"] == 6
    for row in rows.values():
        assert row["answers_per_s"] > 0 and 0 < row["new_tokens"] <= row["answers"] * 6
        before = rows[row["mode"], "one_at_a_time"]
        assert row["speedup"] == pytest.approx(
            before["seconds"] / row["seconds"], rel=0.25
        )  # seconds are rounded to ms
    assert report["greedy_identical"] is True and report["greedy_identical_count"] == 3
    assert report["threads"] == 1 and len(report["load_average"]) == 2
