"""SFT rows (prompt, completion) from every source: the built-in task and pairs as prompt + chosen, local files with
prompt/completion or messages (bad rows named by file, line and field), ultrachat_200k from a copy in the Hub's
layout; and SFT-only data refused by the preference methods."""

import json

import pandas as pd
import pytest
from datasets import Dataset

from prefopt.data import load_splits
from prefopt.data.report import data_report, format_table
from prefopt.errors import RecipeError
from prefopt.models import char_tokenizer
from tests.conftest import compose_config, load_script

USER = lambda text: {"role": "user", "content": text}  # noqa: E731
BOT = lambda text: {"role": "assistant", "content": text}  # noqa: E731
CHATS = [{"messages": [USER(f"Hi {i}"), BOT("Hello"), USER(f"What is {i} + 1?"), BOT(str(i + 1))]} for i in range(10)]
PROMPT_COMPLETION = [{"prompt": f"What is {i} + 1?", "completion": str(i + 1)} for i in range(10)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def local(path, *overrides, method="sft"):
    return compose_config(f"method={method}", "dataset=local", f"dataset.path={path}", *overrides).dataset


def test_the_builtin_task_gives_its_prompts_and_chosen_answers():
    cfg = compose_config("method=sft", "dataset.num_train=8", "dataset.num_eval=4").dataset
    train, test = load_splits(cfg, "sft")
    pairs, _ = load_splits(cfg, "paired")
    assert train.column_names == ["prompt", "completion"] and (len(train), len(test)) == (8, 4)
    assert train.to_list() == [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs]
    assert train[0]["completion"][0]["role"] == "assistant"  # TRL's conversational prompt-completion format


def test_local_pairs_give_prompt_and_chosen_and_unpaired_rows_their_desirable_ones(tmp_path):
    pairs = [{"prompt": f"Q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(10)]
    train, test = load_splits(local(write_jsonl(tmp_path / "pairs.jsonl", pairs), "dataset.eval_fraction=0.2"), "sft")
    assert (len(train), len(test)) == (8, 2)
    assert all(row["completion"] == "good " + row["prompt"][1:] for row in train)  # plain text stays plain
    unpaired = [{"prompt": f"Q{i}", "completion": f"c{i}", "label": i % 2 == 0} for i in range(10)]
    train, test = load_splits(local(write_jsonl(tmp_path / "kto.jsonl", unpaired)), "sft")
    assert sorted([*train["completion"], *test["completion"]]) == ["c0", "c2", "c4", "c6", "c8"]


def test_messages_files_split_at_the_last_assistant_turn(tmp_path):
    train, test = load_splits(local(write_jsonl(tmp_path / "chats.jsonl", CHATS)), "sft")
    assert train.column_names == ["prompt", "completion"] and len(train) + len(test) == 10
    row = next(r for r in train if r["prompt"][0]["content"] == "Hi 3")
    assert row == {"prompt": [USER("Hi 3"), BOT("Hello"), USER("What is 3 + 1?")], "completion": [BOT("4")]}


def test_csv_parquet_and_a_column_mapping_read_the_same_rows(tmp_path):
    pd.DataFrame([{"chat": json.dumps(r["messages"])} for r in CHATS]).to_csv(tmp_path / "chats.csv", index=False)
    pd.DataFrame(CHATS).to_parquet(tmp_path / "chats.parquet")
    from_csv = load_splits(local(tmp_path / "chats.csv", "dataset.columns.messages=chat"), "sft")
    from_parquet = load_splits(local(tmp_path / "chats.parquet"), "sft")
    assert [ds.to_list() for ds in from_csv] == [ds.to_list() for ds in from_parquet]
    mapped = [{"question": r["prompt"], "answer": r["completion"]} for r in PROMPT_COMPLETION]
    pd.DataFrame(mapped).to_parquet(tmp_path / "qa.parquet")
    cfg = local(tmp_path / "qa.parquet", "dataset.columns.prompt=question", "dataset.columns.completion=answer")
    train, test = load_splits(cfg, "sft")
    assert sorted(train.to_list() + test.to_list(), key=str) == sorted(PROMPT_COMPLETION, key=str)


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ({"prompt": "What is 2 + 1?"}, r"line 3: column 'completion' \(field 'completion'\) is missing from this row"),
        ({"prompt": "What is 2 + 1?", "completion": None}, r"line 3: 'completion' is missing \(null\): fill it in"),
        ({"prompt": "What is 2 + 1?", "completion": "  "}, r"line 3: 'completion' is empty"),
        (
            {"prompt": "What is 2 + 1?", "completion": 3},
            r"line 3: 'completion' must be a string or a list of .* got int",
        ),
        ({"messages": []}, r"line 3: 'messages' is an empty list; give the conversation as a list"),
        ({"messages": [USER("hi")]}, r"line 3: 'messages' has no assistant turn \(roles user\): SFT trains on"),
        ({"messages": [USER("hi"), BOT("hey"), USER("?")]}, r"line 3: 'messages' ends with a 'user' turn after"),
        ({"messages": [BOT("hey")]}, r"line 3: 'messages' holds only the assistant's answer: add the turn"),
        ({"messages": "hi"}, r"line 3: 'messages' must be a list of .* got str"),
        ({"messages": [USER("hi"), BOT("")]}, r"line 3: 'messages' message 1 \(assistant\) has empty or non-string"),
        (
            {"messages": [{"role": "human", "content": "hi"}, BOT("x")]},
            r"line 3: 'messages' message 0 has role 'human'",
        ),
    ],
)
def test_a_bad_row_names_the_file_line_and_field(tmp_path, bad_row, message):
    good = CHATS if "messages" in bad_row else PROMPT_COMPLETION
    path = write_jsonl(tmp_path / "sft.jsonl", [*good[:2], bad_row, *good[2:]])
    with pytest.raises(RecipeError, match=rf"sft\.jsonl, {message}"):
        load_splits(local(path), "sft")


def test_a_file_without_sft_columns_says_what_it_needs(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"question": "q", "reply": "r"}])
    with pytest.raises(RecipeError, match=r"odd\.jsonl: missing column.*prompt, completion or messages \(SFT\)"):
        load_splits(local(path), "sft")


@pytest.mark.parametrize(("method", "data_format"), [("dpo", "paired"), ("ipo", "paired"), ("kto", "unpaired")])
def test_preference_methods_refuse_sft_only_data(tmp_path, method, data_format):
    path = write_jsonl(tmp_path / "chats.jsonl", CHATS)
    with pytest.raises(RecipeError, match=r"holds SFT rows .*no chosen/rejected.*method=sft"):
        load_splits(local(path, method=method), data_format)


def ultrachat_copy(root, splits: dict[str, list[dict]]):
    """ultrachat_200k as the Hub holds it: README.md with the configs and data/<split>-*.parquet files whose rows
    have prompt, prompt_id and messages (each message's keys content, role)."""
    (root / "data").mkdir(parents=True)
    for split, chats in splits.items():
        rows = [
            {
                "prompt": chat[0]["content"],
                "prompt_id": f"{split}-{i}",
                "messages": [{"content": m["content"], "role": m["role"]} for m in chat],
            }
            for i, chat in enumerate(chats)
        ]
        pd.DataFrame(rows).to_parquet(root / "data" / f"{split}-00000-of-00001.parquet")
    files = "".join(f"  - split: {split}\n    path: data/{split}-*\n" for split in splits)
    (root / "README.md").write_text(f"---\nconfigs:\n- config_name: default\n  data_files:\n{files}---\n# UltraChat\n")
    return root


def test_ultrachat_loads_a_local_copy_and_skips_chats_without_a_final_answer(tmp_path, caplog):
    chats = [row["messages"] for row in CHATS]
    path = ultrachat_copy(
        tmp_path / "ultrachat_200k",
        {
            "train_sft": [*chats[:6], [USER("no answer")]],
            "test_sft": chats[6:],
            "train_gen": chats[:2],
            "test_gen": chats[:2],
        },
    )
    cfg = compose_config("method=sft", "dataset=ultrachat", f"dataset.path={path}").dataset
    train, test = load_splits(cfg, "sft")
    assert (len(train), len(test)) == (6, 4)  # the train_sft/test_sft splits, the chat without an answer skipped
    assert train[0] == {"prompt": chats[0][:-1], "completion": chats[0][-1:]}
    assert "skipped 1 of 7 rows that do not convert" in caplog.text
    with pytest.raises(RecipeError, match="dataset 'ultrachat' holds SFT rows"):
        load_splits(cfg, "paired")


def test_any_hub_dataset_with_sft_columns_gives_sft_rows(tmp_path):
    chats = [{"conversation": row["messages"]} for row in CHATS]
    path = tmp_path / "chats"
    (path / "data").mkdir(parents=True)  # the Hub's default layout: data/<split>-*.parquet
    pd.DataFrame(chats[:8]).to_parquet(path / "data" / "train-00000-of-00001.parquet")
    pd.DataFrame(chats[8:]).to_parquet(path / "data" / "test-00000-of-00001.parquet")
    cfg = compose_config("method=sft", "dataset=hub", f"dataset.path={path}", "dataset.columns.messages=conversation")
    train, test = load_splits(cfg.dataset, "sft")
    assert (len(train), len(test)) == (8, 2) and train[0]["completion"] == [BOT("1")]
    qa = tmp_path / "qa.jsonl"
    write_jsonl(qa, PROMPT_COMPLETION)
    cfg = compose_config("method=sft", "dataset=hub", f"dataset.path={qa}", "dataset.eval_fraction=0.2")
    train, test = load_splits(cfg.dataset, "sft")
    assert sorted(train.to_list() + test.to_list(), key=str) == sorted(PROMPT_COMPLETION, key=str)
    with pytest.raises(RecipeError, match="holds SFT rows"):
        load_splits(cfg.dataset, "paired")


def test_the_data_report_counts_sft_rows():
    rows = Dataset.from_list([{"prompt": "aaaa", "completion": "bb"}, {"prompt": "c", "completion": "dddddd"}])
    report = data_report(rows, rows, char_tokenizer(), max_length=8)
    train = report["splits"]["train"]
    assert report["format"] == "sft" and set(train["tokens"]) == {"prompt", "completion"}
    assert train["tokens"]["completion"]["max"] == 7 and train["truncated"] == 0  # 6 characters + EOS
    assert "labels" not in train and "length_gap" not in train
    assert format_table(report).startswith("sft, plain text")


def test_check_data_reports_sft_rows_for_method_sft(tmp_path):
    check = load_script("scripts/check_data.py").check
    result = check(compose_config("method=sft", "model=tiny-random", "dataset.num_train=8", "dataset.num_eval=4"))
    assert (result["method"], result["format"], result["splits"]["train"]["rows"]) == ("sft", "sft", 8)
    assert "[[completion starts here]]" in result["example"]["rendered"]
