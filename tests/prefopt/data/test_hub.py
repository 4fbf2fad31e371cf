"""Converters and loaders on local files laid out exactly as the Hub repositories are."""

import gzip
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from prefopt.data import load_splits
from prefopt.data.hub import hh_rlhf_row, ultrafeedback_row
from prefopt.errors import RecipeError
from tests.conftest import compose_config

MULTI_TURN = {
    "chosen": "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: What is 2+2?\n\nAssistant: 4.",
    "rejected": "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: What is 2+2?\n\nAssistant: Go away.",
}


def test_hh_rlhf_prompt_is_everything_before_the_last_assistant_turn():
    row = hh_rlhf_row(MULTI_TURN)
    assert row["prompt"] == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "What is 2+2?"},
    ]
    assert row["chosen"] == [{"role": "assistant", "content": "4."}]
    assert row["rejected"] == [{"role": "assistant", "content": "Go away."}]


def test_hh_rlhf_rows_whose_sides_answer_different_dialogues_are_skipped():
    diverging = {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"}
    assert hh_rlhf_row(diverging) is None


def test_ultrafeedback_splits_message_lists_into_prompt_and_answer():
    user = {"role": "user", "content": "Name a prime."}
    row = ultrafeedback_row(
        {
            "prompt": "Name a prime.",
            "chosen": [user, {"role": "assistant", "content": "7"}],
            "rejected": [user, {"role": "assistant", "content": "8"}],
        }
    )
    assert row == {
        "prompt": [user],
        "chosen": [{"role": "assistant", "content": "7"}],
        "rejected": [{"role": "assistant", "content": "8"}],
    }


def _write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


@pytest.fixture
def hh_rlhf_copy(tmp_path):
    """A local copy in Anthropic/hh-rlhf's layout: <subset>/{train,test}.jsonl.gz."""
    single = {
        "chosen": "\n\nHuman: Capital of Peru?\n\nAssistant: Lima.",
        "rejected": "\n\nHuman: Capital of Peru?\n\nAssistant: I don't know.",
    }
    for subset in ("harmless-base", "helpful-base"):
        _write_jsonl_gz(tmp_path / subset / "train.jsonl.gz", [MULTI_TURN, single] * 3)
        _write_jsonl_gz(tmp_path / subset / "test.jsonl.gz", [single, MULTI_TURN])
    return tmp_path


def _hh_cfg(path, **extra):
    return OmegaConf.create(
        {
            "name": "hh-rlhf",
            "format": "hh-rlhf",
            "path": str(path),
            "data_dir": None,
            "train_split": "train",
            "eval_split": "test",
            "max_train_samples": None,
            "max_eval_samples": None,
            **extra,
        }
    )


def test_hh_rlhf_loads_a_local_copy_of_the_hub_repo(hh_rlhf_copy):
    train, test = load_splits(_hh_cfg(hh_rlhf_copy), "paired")
    assert (len(train), len(test)) == (12, 4)
    assert train.column_names == ["prompt", "chosen", "rejected"]
    train, _ = load_splits(_hh_cfg(hh_rlhf_copy, data_dir="harmless-base"), "paired")
    assert len(train) == 6


def test_paired_data_is_unpaired_for_kto(hh_rlhf_copy):
    _, test = load_splits(_hh_cfg(hh_rlhf_copy, data_dir="helpful-base"), "unpaired")
    assert test.column_names == ["prompt", "completion", "label"]
    assert test["label"] == [True, False, True, False]
    assert test[0]["completion"] == [{"role": "assistant", "content": "Lima."}]


def test_ultrafeedback_loads_a_local_copy_with_the_repo_card(tmp_path):
    user = {"role": "user", "content": "Say hi"}
    rows = [
        {
            "prompt": "Say hi",
            "prompt_id": str(i),
            "chosen": [user, {"role": "assistant", "content": "hi"}],
            "rejected": [user, {"role": "assistant", "content": "no"}],
            "messages": [user],
            "score_chosen": 8.0,
            "score_rejected": 2.0,
        }
        for i in range(5)
    ]
    (tmp_path / "data").mkdir()
    for split in ("train_prefs", "test_prefs", "train_sft"):
        pd.DataFrame(rows).to_parquet(tmp_path / "data" / f"{split}-00000-of-00001.parquet")
    (tmp_path / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n"
        + "".join(f"  - split: {s}\n    path: data/{s}-*\n" for s in ("train_prefs", "test_prefs", "train_sft"))
        + "---\n# ultrafeedback_binarized\n"
    )
    cfg = OmegaConf.create(
        {
            "name": "ultrafeedback",
            "format": "ultrafeedback",
            "path": str(tmp_path),
            "data_dir": None,
            "train_split": "train_prefs",
            "eval_split": "test_prefs",
            "max_train_samples": 3,
            "max_eval_samples": None,
        }
    )
    train, test = load_splits(cfg, "paired")
    assert (len(train), len(test)) == (3, 5)
    assert train[0]["prompt"] == [user] and train[0]["chosen"][0]["content"] == "hi"


def test_unpaired_data_for_a_paired_method_is_a_clear_error(tmp_path):
    path = tmp_path / "kto.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completion": "c", "label": True}) + "\n")
    cfg = OmegaConf.create(
        {
            "name": "mine",
            "format": "kto-mix",
            "path": str(path),
            "data_dir": None,
            "train_split": "train",
            "eval_split": "train",
            "max_train_samples": None,
            "max_eval_samples": None,
        }
    )
    with pytest.raises(RecipeError, match="unpaired.*method=kto"):
        load_splits(cfg, "paired")
    train, _ = load_splits(cfg, "unpaired")
    assert train[0] == {"prompt": "p", "completion": "c", "label": True}
    cfg.format = "ultrafeedback"
    with pytest.raises(RecipeError, match=r"kto\.jsonl.*needs column\(s\) chosen, rejected, found prompt"):
        load_splits(cfg, "paired")


def test_missing_dataset_offline_names_the_dataset_and_the_fix(monkeypatch):
    import datasets
    import huggingface_hub

    # The libraries read HF_HUB_OFFLINE when first imported, which can be before the test session sets it.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    cfg = _hh_cfg("Anthropic/hh-rlhf")
    with pytest.raises(RecipeError, match="hh-rlhf.*dataset.path"):
        load_splits(cfg, "paired")


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _hh_rows(n: int) -> list[dict]:
    return [
        {
            "chosen": f"\n\nHuman: Question {i}?\n\nAssistant: Answer {i}.",
            "rejected": f"\n\nHuman: Question {i}?\n\nAssistant: No idea.",
        }
        for i in range(n)
    ]


def _prompts(ds) -> set[str]:
    return {json.dumps(p) for p in ds["prompt"]}


def test_one_file_of_a_hub_format_holds_out_prompts_instead_of_evaluating_on_train(tmp_path):
    cfg = compose_config("dataset=hh-rlhf", f"dataset.path={_jsonl(tmp_path / 'hh.jsonl', _hh_rows(20))}")
    train, test = load_splits(cfg.dataset, "paired")
    assert (len(train), len(test)) == (18, 2)
    assert _prompts(train).isdisjoint(_prompts(test))
    again, _ = load_splits(cfg.dataset, "paired")
    assert again["prompt"] == train["prompt"]  # the hold-out is seeded (dataset.split_seed)
    other = compose_config("dataset=hh-rlhf", f"dataset.path={tmp_path / 'hh.jsonl'}", "dataset.split_seed=1")
    assert _prompts(load_splits(other.dataset, "paired")[1]) != _prompts(test)


def test_an_explicit_eval_split_sharing_prompts_is_a_warning_unless_allowed(hh_rlhf_copy, caplog):
    with caplog.at_level(logging.WARNING):
        load_splits(_hh_cfg(hh_rlhf_copy, data_dir="harmless-base"), "paired")
    assert "dataset 'hh-rlhf': 2 of 2 eval rows have a prompt that is also in train" in caplog.text
    assert "dataset.allow_eval_overlap=true" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_splits(_hh_cfg(hh_rlhf_copy, data_dir="harmless-base", allow_eval_overlap=True), "paired")
    assert "also in train" not in caplog.text


def test_a_copy_without_the_eval_split_holds_out_and_a_wrong_split_name_lists_the_splits(tmp_path):
    _jsonl(tmp_path / "copy" / "data" / "train-00000-of-00001.jsonl", _hh_rows(10))
    train, test = load_splits(_hh_cfg(tmp_path / "copy", eval_fraction=0.2, split_seed=0), "paired")
    assert (len(train), len(test)) == (8, 2) and _prompts(train).isdisjoint(_prompts(test))
    _jsonl(tmp_path / "copy" / "data" / "validation-00000-of-00001.jsonl", _hh_rows(3))
    with pytest.raises(RecipeError, match=r"no split 'test'; its splits are (train, validation|validation, train)\. "):
        load_splits(_hh_cfg(tmp_path / "copy"), "paired")
    train, test = load_splits(_hh_cfg(tmp_path / "copy", eval_split="validation", allow_eval_overlap=True), "paired")
    assert (len(train), len(test)) == (10, 3)


USER = lambda text: {"role": "user", "content": text}  # noqa: E731
BOT = lambda text: {"role": "assistant", "content": text}  # noqa: E731


def _hub_copy(root: Path, splits: dict[str, list[dict]], ext: str = "parquet") -> Path:
    """A local copy in the Hub's layout: data/<split>-00000-of-00001.<ext>."""
    for split, rows in splits.items():
        file = root / "data" / f"{split}-00000-of-00001.{ext}"
        file.parent.mkdir(parents=True, exist_ok=True)
        if ext == "parquet":
            pd.DataFrame(rows).to_parquet(file)
        else:
            _jsonl(file, rows)
    return root


def test_hub_implicit_conversational_prompt_is_the_common_start_of_chosen_and_rejected(tmp_path):
    rows = [
        {
            "good": [USER(f"Hi {i}"), BOT("Hello"), USER("Add 2+2"), BOT("4")],
            "bad": [USER(f"Hi {i}"), BOT("Hello"), USER("Add 2+2"), BOT("5")],
        }
        for i in range(6)
    ]
    path = _hub_copy(tmp_path, {"train": rows, "test": rows[:1]})
    cfg = compose_config(
        "dataset=hub", f"dataset.path={path}", "dataset.columns.chosen=good", "dataset.columns.rejected=bad"
    )
    train, test = load_splits(cfg.dataset, "paired")
    assert (len(train), len(test)) == (6, 1)
    assert train[2] == {
        "prompt": [USER("Hi 2"), BOT("Hello"), USER("Add 2+2")],
        "chosen": [BOT("4")],
        "rejected": [BOT("5")],
    }
    unpaired, _ = load_splits(cfg.dataset, "unpaired")
    assert unpaired[0] == {"prompt": train[0]["prompt"], "completion": [BOT("4")], "label": True}


def test_hub_plain_text_implicit_prompt_and_plain_prompt_beside_conversations_follow_trl(tmp_path):
    from trl.data_utils import maybe_extract_prompt

    plain = [{"chosen": f"The sky {i} is blue.", "rejected": f"The sky {i} is green."} for i in range(10)]
    cfg = compose_config("dataset=hub", f"dataset.path={_jsonl(tmp_path / 'plain.jsonl', plain)}")
    train, test = load_splits(cfg.dataset, "paired")
    for row in list(train) + list(test):
        i = row["prompt"].split()[2]
        assert (
            row
            == maybe_extract_prompt(plain[int(i)])
            == {
                "prompt": f"The sky {i} is",
                "chosen": " blue.",
                "rejected": " green.",
            }
        )
    # ultrafeedback_binarized's layout: a plain prompt column beside full conversations, so TRL extracts
    ultra = [
        {
            "prompt": f"Name prime {i}",
            "chosen": [USER(f"Name prime {i}"), BOT("7")],
            "rejected": [USER(f"Name prime {i}"), BOT("8")],
        }
        for i in range(10)
    ]
    cfg = compose_config(
        "dataset=hub", f"dataset.path={_hub_copy(tmp_path / 'uf', {'train': ultra}, 'jsonl')}", "dataset.split=train"
    )
    train, _ = load_splits(cfg.dataset, "paired")
    assert train[0]["prompt"] == [USER(train[0]["prompt"][0]["content"])] and train[0]["chosen"] == [BOT("7")]


def test_hub_unpaired_rows_with_a_mapping_train_kto_and_are_refused_for_dpo(tmp_path):
    rows = [{"question": f"Q{i}", "answer": f"A{i}", "good": i % 2 == 0} for i in range(10)]
    path = _hub_copy(tmp_path, {"train": rows})
    columns = ["dataset.columns.prompt=question", "dataset.columns.completion=answer", "dataset.columns.label=good"]
    cfg = compose_config("dataset=hub", f"dataset.path={path}", *columns)
    train, test = load_splits(cfg.dataset, "unpaired")
    assert (len(train), len(test)) == (9, 1)
    assert {"prompt": "Q2", "completion": "A2", "label": True} in list(train) + list(test)
    with pytest.raises(RecipeError, match="unpaired.*method=kto"):
        load_splits(cfg.dataset, "paired")


def test_hub_dataset_without_the_named_columns_says_which_and_how_to_map_them(tmp_path):
    path = _hub_copy(tmp_path / "org-name", {"train": [{"question": "Q", "best": "a", "worst": "b"}]})
    cfg = compose_config("dataset=hub", f"dataset.path={path}", "dataset.columns.chosen=best")
    with pytest.raises(
        RecipeError,
        match=r"dataset 'hub' \(.*org-name, split 'train'\): missing column 'rejected' \(field rejected\); its columns "
        r"are question, best, worst\. Map yours with dataset\.columns\.rejected=<your column>",
    ):
        load_splits(cfg.dataset, "paired")
    with pytest.raises(RecipeError, match="dataset .hub. needs dataset.path="):
        load_splits(compose_config("dataset=hub").dataset, "paired")


def test_hub_rows_that_cannot_be_used_are_skipped_up_to_max_dropped_fraction(tmp_path, caplog):
    rows = [{"prompt": f"Q{i}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(19)]
    rows.append({"prompt": "Q", "chosen": "", "rejected": "b"})
    cfg = compose_config("dataset=hub", f"dataset.path={_jsonl(tmp_path / 'p.jsonl', rows)}")
    with caplog.at_level(logging.WARNING):
        train, test = load_splits(cfg.dataset, "paired")
    assert len(train) + len(test) == 19
    assert "skipped 1 of 20 rows that cannot be used" in caplog.text and "row 20: 'chosen' is empty" in caplog.text
    cfg.dataset.max_dropped_fraction = 0.01
    with pytest.raises(RecipeError, match=r"1 of 20 rows cannot be used, more than dataset.max_dropped_fraction=0.01"):
        load_splits(cfg.dataset, "paired")


def test_a_local_eval_path_sharing_prompts_is_warned_about(tmp_path, caplog):
    rows = [{"prompt": f"Q{i}", "chosen": "a", "rejected": "b"} for i in range(4)]
    cfg = compose_config(
        "dataset=local",
        f"dataset.path={_jsonl(tmp_path / 'train.jsonl', rows)}",
        f"dataset.eval_path={_jsonl(tmp_path / 'eval.jsonl', rows[:3] + [{'prompt': 'new', 'chosen': 'a', 'rejected': 'b'}])}",
    )
    with caplog.at_level(logging.WARNING):
        load_splits(cfg.dataset, "paired")
    assert "dataset 'local': 3 of 4 eval rows have a prompt that is also in train" in caplog.text
