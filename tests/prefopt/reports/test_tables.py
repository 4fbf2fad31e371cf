"""prefopt/reports/tables.py, runs.py and plots.py: the helpers the report tools share, on hand-made values."""

import csv
import math

import pytest

from prefopt import reports
from prefopt.reports import plots, runs
from prefopt.reports.stats import Estimate, mean, over_seeds, rate
from prefopt.reports.tables import estimate_cell, estimate_columns, estimate_fields


def test_read_json_gives_the_object_or_none_for_missing_broken_and_non_object_files(tmp_path):
    (tmp_path / "good.json").write_text('{"a": {"b": 1}}')
    (tmp_path / "broken.json").write_text('{"a": ')  # a run stopped while writing
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "folder.json").mkdir()
    assert reports.read_json(tmp_path / "good.json") == {"a": {"b": 1}}
    for name in ("missing.json", "broken.json", "list.json", "folder.json"):
        assert reports.read_json(tmp_path / name) is None, name


def test_lookup_walks_nested_dicts_and_gives_none_where_the_path_breaks():
    data = {"generation": {"pass_rate": {"policy": 0.5}, "wins": 3}, "pairs": None}
    assert reports.lookup(data, "generation", "pass_rate", "policy") == 0.5
    assert reports.lookup(data, "generation", "pass_rate") == {"policy": 0.5}
    assert reports.lookup(data) is data
    assert reports.lookup(data, "generation", "missing", "policy") is None
    assert reports.lookup(data, "pairs", "reward_accuracy") is None  # a null section
    assert reports.lookup(data, "generation", "wins", "policy") is None  # a number is not a dict
    assert reports.lookup(None, "generation") is None  # no file at all


def test_finite_number_keeps_finite_ints_and_floats_only():
    assert reports.finite_number(3) == 3.0 and isinstance(reports.finite_number(3), float)
    assert reports.finite_number(-0.25) == -0.25
    for value in (None, float("nan"), float("inf"), -math.inf, True, False, "0.5", [1.0]):
        assert reports.finite_number(value) is None, value


def test_format_cell_rounds_floats_keeps_ints_and_text_and_marks_what_is_missing():
    assert reports.format_cell(0.12345) == "0.123"
    assert reports.format_cell(2.0 / 3, ".1f") == "0.7"
    assert reports.format_cell(0.000123456, ".4g") == "0.0001235"
    assert reports.format_cell(7) == "7" and reports.format_cell("completed") == "completed"
    for value in (None, float("nan"), float("inf"), -math.inf, True):
        assert reports.format_cell(value) == "-", value
    assert reports.format_cell(None, missing="") == ""


TABLE = [["method", "kl"], ["dpo", "0.125"], ["orpo+sft", "-"]]


def test_markdown_table_pads_every_column_to_its_widest_cell():
    assert reports.markdown_table(TABLE).splitlines() == [
        "| method   | kl    |",
        "| -------- | ----- |",
        "| dpo      | 0.125 |",
        "| orpo+sft | -     |",
    ]


def test_console_table_aligns_columns_with_an_optional_rule_and_no_trailing_spaces():
    assert reports.console_table(TABLE).splitlines() == [
        "method    kl",
        "--------  -----",
        "dpo       0.125",
        "orpo+sft  -",
    ]
    assert reports.console_table(TABLE, rule=False).splitlines() == ["method    kl", "dpo       0.125", "orpo+sft  -"]


def test_write_csv_round_trips_in_column_order_with_none_as_an_empty_cell(tmp_path):
    path = tmp_path / "table.csv"
    records = [
        {"job": "0", "beta": 0.1, "loss": 0.6931471805599453, "error": None, "extra": "not a column"},
        {"job": "1", "beta": None, "loss": 1e-12, "error": 'quote " and, comma'},
    ]
    reports.write_csv(path, ["job", "loss", "beta", "error"], records)
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["job", "loss", "beta", "error"],
        ["0", "0.6931471805599453", "0.1", ""],  # full precision
        ["1", "1e-12", "", 'quote " and, comma'],
    ]
    with pytest.raises(KeyError):  # a column a record lacks is a mistake, not an empty cell
        reports.write_csv(path, ["job", "missing"], records)


def test_save_figure_writes_a_png_without_a_display_and_frees_the_figure(tmp_path):
    plt = reports.pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    reports.save_figure(fig, tmp_path / "plot.png", dpi=50)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_backend().lower() == "agg"
    assert fig.number not in plt.get_fignums()


def test_estimate_cells_show_a_rates_interval_and_otherwise_one_standard_error():
    assert estimate_cell(rate(0.5, 128, "prompts")) == "0.500 (0.415-0.585)"
    assert estimate_cell(mean(11.31, 0.52, 128, "answers"), ".2f") == "11.31 ± 0.52"
    assert estimate_cell(over_seeds([0.5, 0.6, 0.7], rate=True)) == "0.600 ± 0.058"  # seeds: the s.e. over them
    assert estimate_cell(Estimate(0.25)) == "0.250" and estimate_cell(Estimate(None)) == "-"


def test_estimate_fields_name_the_value_its_standard_error_and_interval():
    fields = estimate_fields("kl", mean(2.0, 0.5))
    assert list(fields) == estimate_columns(["kl"]) == ["kl", "kl_se", "kl_low", "kl_high"]
    assert fields["kl_low"] == pytest.approx(2.0 - 1.96 * 0.5, abs=1e-3)
    assert estimate_fields("x", Estimate(1.0)) == {"x": 1.0, "x_se": None, "x_low": None, "x_high": None}


def test_generation_estimates_read_counts_and_standard_errors_from_eval_json():
    evaluation = {
        "generation": {
            "num_prompts": 128,
            "pass_rate": {"policy": 0.5, "reference": 0.0},
            "right_content_rate": {"policy": 0.625, "reference": 0.375},
            "win_rate": 0.75,
            "kl_policy_reference": 11.0,
            "kl_policy_reference_se": 0.5,
        },
        "pairs": {"reward_accuracy": 0.953125, "num_pairs": 64},
    }
    policy, reference = runs.generation_estimates(evaluation), runs.generation_estimates(evaluation, "reference")
    assert (policy["pass_rate"].n, policy["pass_rate"].over, policy["pass_rate"].rate) == (128, "prompts", True)
    assert policy["kl"].se == 0.5 and policy["kl"].over == "answers" and not policy["kl"].rate
    assert reference["pass_rate"].value == 0.0 and reference["pass_rate"].high > 0  # nothing passed: still unsure
    assert "kl" not in reference
    accuracy = runs.reward_accuracy(evaluation)
    assert (accuracy.value, accuracy.n, accuracy.over) == (0.953125, 64, "pairs") and accuracy.low < 0.9
    # An eval.json written before counts were kept, or none at all: the values alone, with no noise.
    assert runs.generation_estimates({"generation": {"pass_rate": {"policy": 0.5}}})["pass_rate"].se is None
    assert runs.generation_estimates(None)["kl"].value is None


def test_rate_panels_span_at_least_a_third_of_the_unit_interval_and_stay_inside_it():
    low, high = plots.rate_limits([0.477, 0.516])  # the 0.04 difference that filled a panel
    assert high - low >= plots.MIN_RATE_SPAN and low < 0.477 and high > 0.516
    low, high = plots.rate_limits([0.0, 0.02])
    assert low < 0 < 0.3 <= high < 0.35  # at the edge: shifted inside [0, 1], a little room outside it
    low, high = plots.rate_limits([0.05, 0.95])
    assert low < 0.05 and high > 0.95
