"""prefopt/reports/compare.py on hand-made runs: one seed keeps each run's own noise, several give the mean and the
standard error over seeds; the table, the per-kind table, compare.csv and compare.png."""

import csv
import json
import math

import pytest

from prefopt.reports import compare


def write_run(run, kl, content, prompts=None, kl_se=None):
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"status": "completed", "wall_time_s": 10.0}))
    rates = {"reference": 0.5, "policy": content}
    generation = {
        "kl_policy_reference": kl,
        "kl_policy_reference_se": kl_se,
        "num_prompts": prompts,
        "pass_rate": rates,
        "right_content_rate": rates,
        "pass_rate_by_kind": {w: {"sum": r} for w, r in rates.items()},
        "right_content_rate_by_kind": {w: {"sum": r} for w, r in rates.items()},
    }
    (run / "eval.json").write_text(json.dumps({"generation": generation, "pairs": {"reward_accuracy": 1.0}}))


def test_seeds_make_one_row_per_method_with_mean_and_standard_error(tmp_path):
    for seed, (kl, content) in zip((1, 2, 3), ((1.0, 0.5), (2.0, 0.25), (6.0, 0.75))):
        write_run(tmp_path / "dpo" / f"seed-{seed}", kl, content)
    records = [
        compare.read_run("dpo", seed, tmp_path / "dpo" / f"seed-{seed}", [tmp_path / "dpo" / f"seed-{seed}"])
        for seed in (1, 2, 3)
    ]
    never_ran = tmp_path / "dpo" / "seed-4"
    failed = compare.read_run("dpo", 4, never_ran, [never_ran])  # not counted
    assert failed["status"] == "failed" and "seed-4.log" in failed["error"]
    (row,) = compare.summarize(records + [failed])
    assert row["seeds"] == 3 and row["kl"] == 3.0 and row["kl_se"] == pytest.approx(math.sqrt(7) / math.sqrt(3))
    assert row["kl_high"] - row["kl"] == pytest.approx(4.302653 * math.sqrt(7 / 3), rel=1e-5)  # t, 2 dof
    assert row["content_after"] == 0.5 and row["content_after/sum"] == 0.5 and row["content_before_se"] == 0.0
    assert compare.cell(row, "kl") == f"3.000 ± {math.sqrt(7 / 3):.3f}"
    assert compare.cell(row, "content_after") == f"0.500 ± {0.25 / math.sqrt(3):.3f}"  # over seeds: mean ± s.e.
    assert "| dpo    | sum  | 0.500 -> 0.500" in compare.format_kind_table([row])


def test_one_seed_keeps_the_runs_own_interval_and_standard_error(tmp_path):
    run = tmp_path / "dpo" / "seed-1"
    write_run(run, 11.0, 0.5, prompts=128, kl_se=0.5)
    (row,) = compare.summarize([compare.read_run("dpo", 1, run, [run])])
    assert compare.cell(row, "content_after") == "0.500 (0.415-0.585)"  # Wilson over 128 prompts
    assert compare.cell(row, "kl") == "11.000 ± 0.500"
    assert compare.cell(row, "reward_accuracy") == "1.000"  # no num_pairs in this eval.json: no interval


def test_compare_csv_has_each_numbers_interval_columns_and_the_plot_is_written(tmp_path):
    run = tmp_path / "dpo" / "seed-1"
    write_run(run, 11.0, 0.5, prompts=128, kl_se=0.5)
    records = [compare.read_run("dpo", 1, run, [run])]
    compare.write_runs_csv(records, tmp_path / "compare.csv")
    with (tmp_path / "compare.csv").open() as f:
        (written,) = list(csv.DictReader(f))
    assert float(written["pass_after_low"]) == pytest.approx(0.4146, abs=1e-4)
    assert float(written["kl_high"]) == pytest.approx(11.0 + 1.96 * 0.5, abs=1e-3)
    assert written["wall_time_s_se"] == "" and written["content_after/sum"] == "0.5"
    compare.plot(compare.summarize(records), records, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"
