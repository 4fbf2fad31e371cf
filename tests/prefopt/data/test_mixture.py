"""dataset=mix: weighted mixtures of dataset configs, per-source eval parts, one dedup pass, errors naming the source."""

import json
import logging

import pytest

from prefopt.data import load_splits
from prefopt.data.local import prompt_key
from prefopt.data.mixture import load_mixture
from prefopt.errors import RecipeError
from tests.conftest import compose_config

SMALL_BUILTIN = ["+dataset.sources.0.num_train=40", "+dataset.sources.0.num_eval=8"]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _pairs(path, n, prefix="P"):
    return _jsonl(path, [{"prompt": f"{prefix}{i}?", "chosen": f"yes {i}", "rejected": f"no {i}"} for i in range(n)])


def _mix(*overrides):
    return compose_config("dataset=mix", *overrides).dataset


def _keys(ds):
    return {prompt_key(p) for p in ds["prompt"]}


def test_the_shipped_mix_of_builtin_and_a_local_file_takes_exact_shares_seeded(tmp_path):
    path = _pairs(tmp_path / "p.jsonl", 30)
    cfg = _mix(f"dataset.sources.1.path={path}", "+dataset.sources.0.num_train=200", "+dataset.sources.0.num_eval=8")
    mixture = load_mixture(cfg, "paired")
    builtin, local = mixture.parts
    # 0.75 / 0.25 of the largest total both allow: the local file's 27 training rows (3 held out) allow 108
    assert (len(builtin.train), len(local.train)) == (81, 27) and len(mixture.train) == 108
    assert len(local.eval) == 3 and 0 < len(builtin.eval) <= 8
    assert len(mixture.eval) == len(builtin.eval) + len(local.eval)
    assert _keys(mixture.train).isdisjoint(_keys(mixture.eval))
    # plain-text rows beside the built-in messages become messages (one format per column)
    assert {"prompt": [{"role": "user", "content": "P0?"}]}.items() <= next(
        r for r in mixture.train.to_list() + mixture.eval.to_list() if r["prompt"][0]["content"] == "P0?"
    ).items()
    again = load_mixture(cfg, "paired")
    assert again.train.to_list() == mixture.train.to_list() and again.eval.to_list() == mixture.eval.to_list()
    cfg.seed = 1
    assert load_mixture(cfg, "paired").train.to_list() != mixture.train.to_list()
    cfg.max_train_samples = 20
    assert [len(p.train) for p in load_mixture(cfg, "paired").parts] == [15, 5]


def test_rows_counts_and_sources_without_a_weight_give_all_their_rows(tmp_path):
    a, b = _pairs(tmp_path / "a.jsonl", 20, "A"), _pairs(tmp_path / "b.jsonl", 10, "B")
    sources = f"dataset.sources=[{{format:local,path:{a},rows:5}},{{format:local,path:{b},name:bee}}]"
    mixture = load_mixture(_mix(sources), "paired")
    assert [len(p.train) for p in mixture.parts] == [5, 9] and [len(p.eval) for p in mixture.parts] == [2, 1]
    assert mixture.parts[1].label == "dataset.sources[1] (bee)"
    with pytest.raises(RecipeError, match=r"dataset.sources\[0\] \(local\): rows=50, but it has 18 training rows"):
        load_mixture(_mix(sources.replace("rows:5", "rows:50")), "paired")


def test_rows_repeated_across_sources_are_kept_once(tmp_path):
    a = _pairs(tmp_path / "a.jsonl", 20)
    both = f"dataset.sources=[{{format:local,path:{a}}},{{format:local,path:{a}}}]"
    mixture = load_mixture(_mix(both), "paired")
    assert len(mixture.train) == 18 and len(mixture.eval) == 2
    assert [p.duplicates for p in mixture.parts] == [0, 20]
    assert len({json.dumps(r, sort_keys=True) for r in mixture.train}) == len(mixture.train)


def test_a_prompt_one_source_holds_out_is_not_trained_on_from_another(tmp_path, caplog):
    a = _pairs(tmp_path / "a.jsonl", 20)
    b = _jsonl(tmp_path / "b.jsonl", [{"prompt": f"P{i}?", "chosen": f"other {i}", "rejected": "x"} for i in range(20)])
    sources = f"dataset.sources=[{{format:local,path:{a}}},{{format:local,path:{b},split_seed:7}}]"
    mixture = load_mixture(_mix(sources), "paired")
    assert sum(p.held_out_elsewhere for p in mixture.parts) > 0
    assert _keys(mixture.train).isdisjoint(_keys(mixture.eval))
    kept = load_mixture(_mix(sources, "dataset.allow_eval_overlap=true"), "paired")
    assert len(kept.train) == 36 and not _keys(kept.train).isdisjoint(_keys(kept.eval))


def test_paired_and_unpaired_sources_refused_for_dpo_and_mixed_for_kto(tmp_path):
    kto = _jsonl(tmp_path / "k.jsonl", [{"prompt": f"K{i}", "completion": "c", "label": i % 2 == 0} for i in range(10)])
    overrides = [f"dataset.sources.1.path={kto}", *SMALL_BUILTIN]
    with pytest.raises(RecipeError, match=r"dataset.sources\[1\] \(local\): dataset 'local' is unpaired.*method=kto"):
        load_splits(_mix(*overrides), "paired")
    train, test = load_splits(_mix(*overrides), "unpaired")
    assert train.column_names == ["prompt", "completion", "label"]
    assert {"K0", "K1"} & {r["prompt"][0]["content"] for r in list(train) + list(test)}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset.sources.0.fraction=0.5"], r"the fractions 0.5, 0.25 sum to 0.75, not 1"),
        (
            ["dataset.sources.0.fraction=1.25", "dataset.sources.1.fraction=-0.25"],
            r"dataset.sources\[0\]: fraction=1.25 must be a number from 0 to 1",
        ),
        (["dataset.sources.0.rows=10"], r"dataset.sources\[0\]: give fraction: or rows:, not both"),
        (["dataset.sources.0.fraction=null"], r"every source needs one; dataset.sources\[0\] has none"),
        (["+dataset.sources.1.fracton=1"], r"dataset.sources\[1\] \(local\): unknown key\(s\) fracton"),
        (["dataset.sources.1.format=nope"], r"dataset.sources\[1\]: no dataset config 'nope'"),
        (["dataset.sources=[]"], r"dataset=mix needs dataset.sources"),
        (
            ["dataset.sources.1.path=/nowhere/pairs.jsonl"],
            r"dataset.sources\[1\] \(local\): /nowhere/pairs.jsonl: no such file or folder",
        ),
    ],
)
def test_mixture_mistakes_are_errors_naming_the_source(overrides, message):
    with pytest.raises(RecipeError, match=message):
        load_mixture(_mix(*SMALL_BUILTIN, *overrides), "paired")


def test_the_command_line_list_form_composes_with_hub_and_builtin_sources(tmp_path, caplog):
    hub = _jsonl(
        tmp_path / "hub.jsonl", [{"chosen": f"Sky {i} is blue", "rejected": f"Sky {i} is red"} for i in range(20)]
    )
    cfg = _mix(
        f"dataset.sources=[{{format:builtin,num_train:16,num_eval:4,fraction:0.5}},{{format:hub,path:{hub},fraction:0.5}}]"
    )
    with caplog.at_level(logging.INFO):
        train, test = load_splits(cfg, "paired")
    assert len(train) == 32 and len(test) == 4 + 2
    assert "dataset.sources[1] (hub) gives 16 train rows (50.0%) and 2 eval rows" in caplog.text
