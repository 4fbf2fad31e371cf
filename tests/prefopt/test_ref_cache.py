"""Reference log-probs computed once and reused: content keys, and a sweep that runs the reference only for its first job."""

import math

import pytest
from datasets import Dataset

from prefopt.data.cache import content_hash, on_disk
from prefopt.ref_cache import content_keyed
from tests.conftest import FAST, read_run, run_train

ROWS = [
    {"prompt_ids": [1, 2, 3], "chosen_ids": [4], "rejected_ids": [5, 6]},
    {"prompt_ids": [7], "chosen_ids": [8], "rejected_ids": [9]},
]


def test_content_key_ignores_lineage_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPES_CACHE_DIR", str(tmp_path))
    in_memory = Dataset.from_list(ROWS)
    stored = on_disk(Dataset.from_list(ROWS).map(lambda row: row), "train")  # another lineage, and file-backed
    assert stored.cache_files and str(tmp_path) in stored.cache_files[0]["filename"]
    assert content_hash(in_memory) == content_hash(stored) == content_keyed(stored)._fingerprint
    assert content_hash(Dataset.from_list(ROWS[:1])) != content_hash(in_memory)
    assert on_disk(in_memory, "train").cache_files == stored.cache_files  # stored once per content


def test_sweep_runs_the_reference_once_and_reuses_its_log_probs(tmp_path):
    cache = {"RECIPES_CACHE_DIR": str(tmp_path / "cache")}
    sweep = tmp_path / "sweep"
    result = run_train(
        "-m",
        "method.beta=0.05,0.5",
        "method.loss_type=[sigmoid]",  # plain DPO: the loss starts at ln 2
        "method.precompute_ref_log_probs=true",
        *FAST,
        "train.max_steps=3",
        "eval_generation.enabled=false",
        f"hydra.sweep.dir={sweep}",
        env=cache,
    )
    output = result.stdout + result.stderr
    # Job 0 computes the train and eval reference log-probs; job 1 (another beta) finds them on disk.
    for split in ("train", "eval"):
        assert output.count(f"reference log-probs for {split}: computed and cached in") == 1, output[-3000:]
        assert output.count(f"reference log-probs for {split}: reused from") == 1
    cached, _ = read_run(sweep / "1")
    assert cached["status"] == "completed" and math.isclose(
        cached["before_training"]["eval_loss"], math.log(2), rel_tol=1e-6
    )

    # The cached log-probs are the reference's: the same job without precompute reaches the same numbers.
    direct = tmp_path / "direct"
    run_train(
        "method.beta=0.5",
        "method.loss_type=[sigmoid]",
        *FAST,
        "train.max_steps=3",
        "eval_generation.enabled=false",
        f"hydra.run.dir={direct}",
        env=cache,
    )
    expected, _ = read_run(direct)
    for key in ("eval_loss", "eval_rewards/margins", "eval_rewards/accuracies"):
        assert cached[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
