"""The data report's numbers on a dataset whose lengths are counted by hand (char tokenizer: 1 character = 1 token).

Plain-text rows: the prompt is its characters; a completion is its characters plus the EOS token TRL appends.
"""

import json

from datasets import Dataset

from prefopt.data import to_unpaired
from prefopt.data.report import BOUNDARY_MARK, data_report, format_table, percentile, short_summary
from prefopt.models import char_tokenizer

TRAIN = [
    {"prompt": "aaaa", "chosen": "bbbbbb", "rejected": "cc"},  # 4 | 7 vs 3: 4 + 7 > 10, truncated
    {"prompt": "dd", "chosen": "e", "rejected": "fffff"},  # 2 | 2 vs 6
    {"prompt": "aaaa", "chosen": "gggg", "rejected": "hhh"},  # 4 | 5 vs 4 (prompt repeats)
    {"prompt": "aaaa", "chosen": "gggg", "rejected": "hhh"},  # the same row again
    {"prompt": "pppppppppp", "chosen": "x", "rejected": "yy"},  # 10 | 2 vs 3: the prompt fills max_length
]
EVAL = [{"prompt": "dd", "chosen": "q", "rejected": "rr"}, {"prompt": "new", "chosen": "s", "rejected": "t"}]


def test_nearest_rank_percentiles():
    assert [percentile([1, 2, 3, 4], q) for q in (50, 90, 99)] == [2, 4, 4]
    assert percentile([5, 1, 3, 2, 4], 50) == 3 and percentile([], 50) is None


def test_report_numbers_on_a_hand_counted_dataset():
    report = data_report(Dataset.from_list(TRAIN), Dataset.from_list(EVAL), char_tokenizer(), max_length=10)
    train = report["splits"]["train"]
    assert (report["format"], report["conversational"], report["max_length"]) == ("paired", False, 10)
    assert train["rows"] == 5
    assert train["tokens"]["prompt"] == {"p50": 4, "p90": 10, "p99": 10, "max": 10, "mean": 4.8}
    assert train["tokens"]["chosen"] == {"p50": 5, "p90": 7, "p99": 7, "max": 7, "mean": 4.2}
    assert train["tokens"]["rejected"] == {"p50": 4, "p90": 6, "p99": 6, "max": 6, "mean": 4.0}
    assert (train["truncated"], train["emptied"], train["boundary_mismatches"]) == (2, 1, 0)
    # gaps +4, -4, +1, +1, -1: mean 0.2, chosen longer in 3 of 5
    assert train["length_gap"] == {"mean_chosen_minus_rejected": 0.2, "chosen_longer_fraction": 0.6}
    assert (train["duplicate_rows"], train["duplicate_prompts"]) == (1, 2)
    assert report["splits"]["eval"]["rows"] == 2 and report["eval_prompts_in_train"] == 1
    assert report["example"]["row"] == TRAIN[0]
    assert report["example"]["rendered"] == f"aaaa{BOUNDARY_MARK}bbbbbb<|im_end|>"
    json.dumps(report)  # --json must be able to print it


def test_unpaired_report_counts_labels_and_their_lengths():
    report = data_report(
        to_unpaired(Dataset.from_list(TRAIN)), to_unpaired(Dataset.from_list(EVAL)), char_tokenizer(), 10
    )
    train = report["splits"]["train"]
    assert report["format"] == "unpaired" and train["rows"] == 10
    assert train["labels"] == {
        "desirable": 5,
        "undesirable": 5,
        "mean_desirable_tokens": 4.2,
        "mean_undesirable_tokens": 4.0,
    }
    assert train["tokens"]["completion"]["max"] == 7 and "length_gap" not in train


def test_conversational_lengths_include_the_chat_template():
    rows = [
        {
            "prompt": [{"role": "user", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": "yes"}],
            "rejected": [{"role": "assistant", "content": "no"}],
        }
    ]
    report = data_report(Dataset.from_list(rows), Dataset.from_list(rows), char_tokenizer(), max_length=22)
    train = report["splits"]["train"]
    assert report["conversational"] and train["tokens"]["prompt"]["max"] == 21  # 2 characters + 19 of ChatML
    assert (train["truncated"], train["emptied"]) == (1, 0)
    assert report["example"]["rendered"].endswith(f"<|im_start|>assistant\n{BOUNDARY_MARK}yes<|im_end|>\n")


def test_max_rows_measures_a_prefix_but_counts_every_row():
    report = data_report(Dataset.from_list(TRAIN), Dataset.from_list(EVAL), char_tokenizer(), 10, max_rows=2)
    train = report["splits"]["train"]
    assert (train["rows"], train["rows_measured"], train["tokens"]["prompt"]["max"]) == (5, 2, 4)
    assert report["eval_prompts_in_train"] == 1


def test_table_and_short_summary_show_the_numbers():
    report = data_report(Dataset.from_list(TRAIN), Dataset.from_list(EVAL), char_tokenizer(), max_length=10)
    table = format_table(report, "Data check")
    assert "paired, plain text, train.max_length=10" in table
    assert "length bias (train): chosen longer in 60.0% of pairs, mean chosen - rejected = +0.20 tokens" in table
    assert "eval prompts also in train: 1" in table and f"aaaa{BOUNDARY_MARK}bbbbbb" in table
    train_row = next(line for line in table.splitlines() if line.startswith("train") and "prompt" in line)
    assert train_row.split() == ["train", "5", "prompt", "4", "10", "10", "10", "4.80"]
    summary = short_summary(report)
    assert summary[0] == (
        "train: 5 rows; tokens p50/p99/max prompt 4/10/10, chosen 5/7/7, rejected 4/6/6; truncated 2, emptied 1 at "
        "max_length 10; boundary mismatches 0; chosen longer in 60%; duplicate prompts 2"
    )
