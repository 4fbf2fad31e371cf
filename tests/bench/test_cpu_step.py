"""bench/cpu_step.py end to end on the tiny random model: its rows for a method, consistent numbers, padding
fractions."""

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import REPO, load_script


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "cpu_step.py"), "--model", "tiny-random", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )


def check_rows(result: dict, rows: tuple[str, ...]) -> None:
    assert set(result["rows"]) == set(rows)
    for name in rows:
        row = result["rows"][name]
        for key in ("s_per_step", "cpu_s_per_step", "tokens_per_s", "peak_rss_mib", "positions_per_step"):
            assert math.isfinite(row[key]) and row[key] > 0, (name, key, row[key])
        # tokens/s counts the same non-pad tokens in every row: the rows trained on the same batches
        assert row["tokens_per_s"] * row["s_per_step"] == pytest.approx(result["tokens_per_step"], rel=1e-9)
    rows_, ratios = result["rows"], result["ratios"]
    assert ratios["plain_over_recipe"] == rows_["plain_trl"]["s_per_step"] / rows_["recipe"]["s_per_step"]
    assert ratios["trl_config_over_recipe"] == rows_["trl_config"]["s_per_step"] / rows_["recipe"]["s_per_step"]
    assert ratios["plain_over_recipe_cpu"] == rows_["plain_trl"]["cpu_s_per_step"] / rows_["recipe"]["cpu_s_per_step"]


@pytest.mark.slow  # four rows and 1,024 ragged pairs through every sampler: about half a minute; make test-slow
def test_dpo_json_has_four_rows_their_ratios_and_the_padding_of_ragged_pairs():
    result = json.loads(run_bench("--steps", "2", "--ragged", "--json").stdout)  # stdout holds the JSON alone
    check_rows(result, ("recipe", "plain_trl", "trl_config", "floor"))
    rows = result["rows"]
    assert result["ratios"]["recipe_over_floor"] == rows["recipe"]["s_per_step"] / rows["floor"]["s_per_step"]
    assert result["method"] == "dpo" and result["steps"] == 2 and result["batch_size"] == 8
    assert 0 < result["non_pad_fraction"] <= 1
    # Policy and reference: TRL's layout computes 2 x its padded rows, plus a recomputation with plain TRL's
    # activation checkpointing; the recipe's shared-prompt rows fewer.
    assert rows["plain_trl"]["positions_per_step"] > rows["trl_config"]["positions_per_step"]
    assert rows["recipe"]["positions_per_step"] < 0.8 * rows["trl_config"]["positions_per_step"]
    setups = result["ragged"]["setups"]
    fraction = {name: setup["mean_batch_fraction"] for name, setup in setups.items()}
    # TRL's layout: grouping helps but cannot beat each pair's own fraction; shared-prompt rows go past it.
    assert fraction["random"] < 0.7 < 0.85 < fraction["group_by_length"] <= result["ragged"]["pair_bound"] + 1e-9, (
        setups
    )
    assert fraction["group_by_length+shared"] > max(0.9, result["ragged"]["pair_bound"]), setups
    assert setups["random"]["positions_vs_trl"] == 1
    assert setups["group_by_length+shared"]["positions_vs_trl"] < 0.7 * setups["group_by_length"]["positions_vs_trl"]


@pytest.fixture(scope="module")
def cpu_bench():
    return load_script("bench/cpu_step.py")


@pytest.mark.parametrize("method", ["kto", *(pytest.param(m, marks=pytest.mark.slow) for m in ("orpo", "simpo", "rm"))])
def test_each_method_names_itself_and_computes_fewer_positions_than_trl(cpu_bench, method):
    result = cpu_bench.measure(method, "tiny-random", batch_size=8, steps=1, warmup=0)
    assert result["method"] == method
    check_rows(result, ("recipe", "plain_trl", "trl_config"))
    rows = result["rows"]
    assert rows["recipe"]["positions_per_step"] < 0.85 * rows["trl_config"]["positions_per_step"]


def test_table_names_every_row():
    out = run_bench("--steps", "1", "--warmup", "0").stdout
    assert "plain TRL / recipe:" in out and "recipe / floor:" in out
    for name in ("recipe", "plain_trl", "trl_config", "floor"):
        assert any(line.startswith(name + " ") for line in out.splitlines()), name


def test_ragged_is_dpos_measurement(cpu_bench, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["cpu_step.py", "--method", "kto", "--ragged"])
    with pytest.raises(SystemExit) as exit_info:
        cpu_bench.main()
    assert exit_info.value.code == 2 and "--ragged measures DPO's pairs" in capsys.readouterr().err
