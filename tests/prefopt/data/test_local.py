"""dataset=local: JSONL/CSV/Parquet files with a column mapping, and errors that name the file, line and field."""

import json
import logging

import pandas as pd
import pytest
from omegaconf import OmegaConf

from prefopt.data import load_splits
from prefopt.data.local import read_pairs
from prefopt.errors import RecipeError
from tests.conftest import compose_config

MAPPING = {"prompt": "question", "chosen": "good", "rejected": "bad"}
ROWS = [{"question": f"Q{i}?", "good": f"right {i}", "bad": f"wrong {i}"} for i in range(10)]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _cfg(path, **extra):
    base = {
        "name": "local",
        "format": "local",
        "path": str(path) if path else None,
        "eval_path": None,
        "eval_fraction": 0.2,
        "split_seed": 0,
        "columns": MAPPING,
        "max_dropped_fraction": 0.1,
        "max_train_samples": None,
        "max_eval_samples": None,
    }
    return OmegaConf.create({**base, **extra})


def test_jsonl_with_a_column_mapping_holds_out_prompts_never_trained_on(tmp_path):
    train, test = load_splits(_cfg(_write_jsonl(tmp_path / "pairs.jsonl", ROWS)), "paired")
    assert (len(train), len(test)) == (8, 2)
    assert train.column_names == ["prompt", "chosen", "rejected"]
    assert set(train["prompt"]).isdisjoint(test["prompt"])
    row = next(r for r in train if r["prompt"] == "Q3?")
    assert row == {"prompt": "Q3?", "chosen": "right 3", "rejected": "wrong 3"}  # plain text stays plain


def test_the_held_out_split_is_by_prompt_so_repeated_prompts_stay_together(tmp_path):
    rows = [{"question": f"Q{i % 5}", "good": f"g{i}", "bad": f"b{i}"} for i in range(20)]
    train, test = load_splits(_cfg(_write_jsonl(tmp_path / "p.jsonl", rows), eval_fraction=0.2), "paired")
    assert (len(train), len(test)) == (16, 4) and len(set(test["prompt"])) == 1
    assert set(train["prompt"]).isdisjoint(test["prompt"])


def test_csv_and_parquet_read_the_same_rows_and_eval_path_is_used_as_given(tmp_path):
    pd.DataFrame(ROWS).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(ROWS[:3]).to_parquet(tmp_path / "eval.parquet")
    train, test = load_splits(_cfg(tmp_path / "train.csv", eval_path=str(tmp_path / "eval.parquet")), "paired")
    assert (len(train), len(test)) == (10, 3)
    assert train[4] == {"prompt": "Q4?", "chosen": "right 4", "rejected": "wrong 4"}
    assert test["prompt"] == ["Q0?", "Q1?", "Q2?"]


def test_a_folder_reads_every_data_file_in_name_order(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    _write_jsonl(folder / "a.jsonl", ROWS[:4])
    pd.DataFrame(ROWS[4:]).to_parquet(folder / "b.parquet")
    (folder / "notes.txt").write_text("ignored")
    rows = read_pairs(folder, MAPPING)
    assert [r["prompt"] for r in rows] == [f"Q{i}?" for i in range(10)]


def test_message_lists_are_kept_and_plain_strings_beside_them_become_messages(tmp_path):
    user = [{"role": "user", "content": "Hi"}]
    rows = [
        {"question": user, "good": [{"role": "assistant", "content": "Hello"}], "bad": "Go away"},
        {"question": "Bye", "good": "See you", "bad": "Whatever"},
    ]
    train, test = load_splits(_cfg(_write_jsonl(tmp_path / "chat.jsonl", rows), eval_fraction=0.5), "paired")
    everything = {r["prompt"][0]["content"]: r for r in list(train) + list(test)}
    assert everything["Hi"]["rejected"] == [{"role": "assistant", "content": "Go away"}]
    assert everything["Bye"]["prompt"] == [{"role": "user", "content": "Bye"}]


def test_csv_cells_may_hold_json_message_lists(tmp_path):
    answer = json.dumps([{"role": "assistant", "content": "4"}])
    pd.DataFrame([{"question": "2+2?", "good": answer, "bad": "5"}]).to_csv(tmp_path / "p.csv", index=False)
    (row,) = read_pairs(tmp_path / "p.csv", MAPPING)
    assert row["chosen"] == [{"role": "assistant", "content": "4"}] and row["rejected"] == "5"


def test_unpaired_rows_with_a_mapping_and_text_labels(tmp_path):
    pd.DataFrame([{"q": "A", "answer": "yes", "ok": "true"}, {"q": "B", "answer": "no", "ok": "0"}]).to_csv(
        tmp_path / "kto.csv", index=False
    )
    rows = read_pairs(tmp_path / "kto.csv", {"prompt": "q", "completion": "answer", "label": "ok"})
    assert rows == [
        {"prompt": "A", "completion": "yes", "label": True},
        {"prompt": "B", "completion": "no", "label": False},
    ]
    cfg = _cfg(tmp_path / "kto.csv", columns={"prompt": "q", "completion": "answer", "label": "ok"}, eval_fraction=0.5)
    with pytest.raises(RecipeError, match="unpaired.*method=kto"):
        load_splits(cfg, "paired")
    train, test = load_splits(cfg, "unpaired")
    assert sorted(list(train["label"]) + list(test["label"])) == [False, True]


def test_the_config_group_composes_and_column_overrides_merge():
    cfg = compose_config("dataset=local", "dataset.path=x.jsonl", "dataset.columns.chosen=good")
    assert dict(cfg.dataset.columns) == {
        "prompt": "prompt",
        "chosen": "good",
        "rejected": "rejected",
        "completion": "completion",
        "label": "label",
        "messages": "messages",
    }


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"question": "Q", "good": "a"}],
            r"p\.jsonl: missing column\(s\): needs question, good, bad .*found question, good",
        ),
        ([ROWS[0], {"question": "Q", "good": "a"}], r"p\.jsonl, line 2: column 'bad' \(field 'rejected'\) is missing"),
        (
            [ROWS[0], ROWS[1], {"question": "Q", "good": "  ", "bad": "b"}],
            r"p\.jsonl, line 3: 'chosen' \(column 'good'\) is empty",
        ),
        (
            [{"question": 7, "good": "a", "bad": "b"}],
            r"line 1: 'prompt' \(column 'question'\) must be a string or a list of .*got int",
        ),
        ([{"question": None, "good": "a", "bad": "b"}], r"line 1: 'prompt' \(column 'question'\) is missing \(null\)"),
        (
            [{"question": "Q", "good": [{"role": "assistant"}], "bad": "b"}],
            r"line 1: 'chosen' .* message 0 must be a \{\"role\", \"content\"\}",
        ),
        (
            [{"question": "Q", "good": [{"role": "bot", "content": "x"}], "bad": "b"}],
            r"line 1: 'chosen' .* message 0 has role 'bot'",
        ),
        (
            [{"question": "Q", "good": [{"role": "user", "content": "x"}], "bad": "b"}],
            r"line 1: 'chosen' .* must end with an assistant message",
        ),
        (
            [{"question": [{"role": "assistant", "content": "x"}], "good": "a", "bad": "b"}],
            r"line 1: 'prompt' .* ends with an assistant message",
        ),
        ([{"question": "Q", "good": [], "bad": "b"}], r"line 1: 'chosen' .* is an empty message list"),
    ],
)
def test_each_bad_row_is_an_error_naming_the_file_line_and_field(tmp_path, rows, message):
    with pytest.raises(RecipeError, match=message):
        read_pairs(_write_jsonl(tmp_path / "p.jsonl", rows), MAPPING)


def test_parquet_rows_are_numbered(tmp_path):
    pd.DataFrame([ROWS[0], {"question": "Q", "good": "", "bad": "b"}]).to_parquet(tmp_path / "p.parquet")
    with pytest.raises(RecipeError, match=r"p\.parquet, row 2: 'chosen' \(column 'good'\) is empty"):
        read_pairs(tmp_path / "p.parquet", MAPPING)


def test_bad_labels_and_bad_json_name_the_line(tmp_path):
    _write_jsonl(tmp_path / "k.jsonl", [{"prompt": "p", "completion": "c", "label": "maybe"}])
    with pytest.raises(RecipeError, match=r"k\.jsonl, line 1: 'label' must be true/false"):
        read_pairs(tmp_path / "k.jsonl", {})
    (tmp_path / "broken.jsonl").write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(RecipeError, match=r"broken\.jsonl, line 2: not valid JSON"):
        read_pairs(tmp_path / "broken.jsonl", MAPPING)


def test_non_utf8_bytes_are_a_clear_error_naming_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        (json.dumps(ROWS[0]) + "\n").encode() + '{"question": "café", "good": "a", "bad": "b"}\n'.encode("latin-1")
    )
    with pytest.raises(
        RecipeError, match=r"latin1\.jsonl, line 2: not UTF-8 text \(byte 0xe9\)\. Re-save the file as UTF-8"
    ):
        read_pairs(path, MAPPING)
    path.with_suffix(".csv").write_bytes("question,good,bad\ncafé,a,b\n".encode("latin-1"))
    with pytest.raises(RecipeError, match=r"latin1\.csv, line 2: not UTF-8"):
        read_pairs(path.with_suffix(".csv"), MAPPING)


def test_identical_pairs_are_dropped_and_counted_up_to_max_dropped_fraction(tmp_path, caplog):
    rows = ROWS + [{"question": "Same?", "good": "x", "bad": " x "}]
    path = _write_jsonl(tmp_path / "p.jsonl", rows)
    with caplog.at_level(logging.WARNING):
        kept = read_pairs(path, MAPPING, max_dropped_fraction=0.1)
    assert len(kept) == 10 and "Same?" not in [r["prompt"] for r in kept]
    assert "dropped 1 of 11 rows whose chosen is identical to rejected" in caplog.text
    with pytest.raises(
        RecipeError,
        match=r"identical to rejected in 1 of 11 rows \(9%\), more than dataset.max_dropped_fraction=0.05 \(e.g. .*p\.jsonl, line 11\)",
    ):
        read_pairs(path, MAPPING, max_dropped_fraction=0.05)


def test_missing_path_and_bad_eval_fraction_say_what_to_set(tmp_path):
    with pytest.raises(RecipeError, match="dataset=local needs dataset.path="):
        load_splits(_cfg(None), "paired")
    with pytest.raises(RecipeError, match="no such file or folder"):
        load_splits(_cfg(tmp_path / "nope.jsonl"), "paired")
    with pytest.raises(RecipeError, match="dataset.eval_fraction=0.0: must be between 0 and 1"):
        load_splits(_cfg(_write_jsonl(tmp_path / "p.jsonl", ROWS), eval_fraction=0.0), "paired")
    with pytest.raises(RecipeError, match=r"cannot read '\.txt' files"):
        read_pairs(_touch(tmp_path / "p.txt"), MAPPING)


def _touch(path):
    path.write_text("x")
    return path
