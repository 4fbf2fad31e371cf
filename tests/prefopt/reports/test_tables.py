"""prefopt/reports.py: the helpers the report scripts share, on hand-made values."""

import csv
import math

import pytest

from prefopt import reports


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
