"""Converters and loaders on local files laid out exactly as the Hub repositories are."""

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from prefopt.data import load_splits
from prefopt.data.hub import hh_rlhf_row, ultrafeedback_row
from prefopt.errors import RecipeError

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


def test_missing_dataset_offline_names_the_dataset_and_the_fix():
    cfg = _hh_cfg("Anthropic/hh-rlhf")
    with pytest.raises(RecipeError, match="hh-rlhf.*dataset.path"):
        load_splits(cfg, "paired")
