"""scripts/make_pairs.py end to end on the tiny model, then scripts/train.py on its output with dataset=local."""

import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from prefopt.config import compose_config
from prefopt.data.local import read_pairs
from prefopt.errors import RecipeError
from tests.conftest import FAST, REPO, load_script, read_run, run_train
from tests.prefopt.data.test_pairs import build_tiny_reward_model

# A random model never emits EOS: its answers are all cut off, so let them be chosen.
FAST_PAIRS = [
    "model=tiny-random",
    "num_prompts=12",
    "num_samples=3",
    "max_new_tokens=10",
    "batch_size=6",
    "require_finished=false",
]


def make_pairs(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_pairs.py"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )


def test_pairs_from_a_reward_model_train_with_dataset_local(tmp_path, run_dir):
    output = tmp_path / "pairs.jsonl"
    reward = build_tiny_reward_model(tmp_path / "rm")
    result = make_pairs(*FAST_PAIRS, f"output={output}", f"reward.model={reward}", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    stats = json.loads(result.stdout)
    assert (stats["prompts"], stats["scorer"]) == (12, str(reward))
    assert stats["pairs"] + stats["ties"] + stats["too_few_distinct"] == 12 and stats["pairs"] >= 10
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == stats["pairs"]
    assert all(r["chosen_score"] > r["rejected_score"] and r["chosen"] != r["rejected"] for r in rows)
    assert len(read_pairs(output, {})) == len(rows)  # the local loader accepts every row

    again = make_pairs(*FAST_PAIRS, f"output={output}", f"reward.model={reward}")
    assert again.returncode == 2 and "already exists: pass --force" in again.stderr
    assert len(output.read_text().splitlines()) == len(rows)

    run_train(
        "method=dpo",
        "model=tiny-random",
        "logger=none",
        "train.max_steps=2",
        "dataset=local",
        f"dataset.path={output}",
        "dataset.eval_fraction=0.25",
        f"hydra.run.dir={run_dir}",
    )
    metrics, config = read_run(run_dir)
    assert metrics["status"] == "completed" and metrics["dataset"] == "local"
    assert config["dataset"]["path"] == str(output)
    log = (run_dir / "train.log").read_text()
    assert "data check: train: " in log and "boundary mismatches 0" in log


def test_verifier_scores_of_random_text_all_tie_and_the_error_counts_them(tmp_path):
    output = tmp_path / "pairs.jsonl"
    result = make_pairs(*FAST_PAIRS, "num_prompts=4", f"output={output}")
    assert result.returncode == 2 and not output.exists()
    assert "no pairs from 4 prompts: 4 tied (no finished answer scored above the worst)" in result.stderr
    strict = make_pairs(*FAST_PAIRS, "num_prompts=2", "require_finished=true", f"output={output}")
    assert strict.returncode == 2 and "6 answers were cut off at max_new_tokens=10" in strict.stderr


def test_reward_model_sources_that_are_not_reward_models_are_refused_before_sampling(tmp_path):
    make = load_script("scripts/make_pairs.py").make_pairs
    output = tmp_path / "pairs.jsonl"

    def refused(source):
        cfg = compose_config(*FAST_PAIRS, f"reward.model={source}", f"output={output}", config_name="make_pairs")
        with pytest.raises(RecipeError) as raised:
            make(cfg, progress=False)
        assert not output.exists()
        return str(raised.value)

    policy_run = tmp_path / "dpo-run"
    (policy_run / "model").mkdir(parents=True)
    OmegaConf.save(compose_config("method=dpo", "model=tiny-random"), policy_run / "config.yaml")
    assert refused(policy_run).startswith(
        f"reward.model={policy_run}: {policy_run} is a run of method=dpo, which trains a policy (a causal LM), "
        "not a reward model. Train one with `make train-rm`"
    )
    unfinished = tmp_path / "rm-run"
    unfinished.mkdir()
    OmegaConf.save(compose_config("method=rm", "model=tiny-random"), unfinished / "config.yaml")
    assert f"{unfinished} has no model/: the run did not finish training" in refused(unfinished)
    (tmp_path / "empty").mkdir()
    assert "the folder holds neither a model (config.json) nor a run of `make train-rm`" in refused(tmp_path / "empty")


def finished_run(run_dir):
    """What scripts/train.py leaves for a LoRA run of the tiny model: config.yaml and model/ with an adapter (whose
    weights are random, so that it changes what the model computes)."""
    from peft import get_peft_model

    from prefopt.adapters import lora_config
    from prefopt.models import load_model

    cfg = compose_config("method=dpo", *FAST)
    run_dir.mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    adapter = lora_config(cfg.peft)
    adapter.init_lora_weights = False  # random A and B, not the B = 0 of a fresh adapter
    get_peft_model(load_model(cfg.model, "fp32", seed=cfg.train.seed), adapter).save_pretrained(run_dir / "model")
    return run_dir


def test_pairs_from_a_finished_run_sample_its_trained_policy(tmp_path, run_dir):
    """run=<a dpo run>: the model sampled is the run's base + its LoRA adapter, not the base model."""
    import torch

    from prefopt.evaluation import load_run
    from prefopt.models import load_model

    finished_run(run_dir)
    script = load_script("scripts/make_pairs.py")
    output = tmp_path / "pairs.jsonl"
    reward = build_tiny_reward_model(tmp_path / "rm")
    overrides = [o for o in FAST_PAIRS if not o.startswith("model=")]
    cfg = compose_config(
        *overrides, f"run={run_dir}", f"reward.model={reward}", f"output={output}", config_name="make_pairs"
    )
    policy, _, name, _ = script.load_policy(cfg)
    _, _, models = load_run(run_dir)
    base = load_model(compose_config("model=tiny-random").model, "fp32", seed=42)
    ids = torch.tensor([[5, 9, 20, 33, 41, 7]])
    with torch.no_grad():
        sampled, trained, untrained = (m(input_ids=ids).logits for m in (policy, models.policy, base))
    torch.testing.assert_close(sampled, trained, rtol=1e-4, atol=1e-4)  # the adapter merged in, nothing else
    assert not torch.allclose(sampled, untrained, atol=1e-3)
    assert name == f"tiny-random (dpo run {run_dir})"
    stats = script.make_pairs(cfg, progress=False)
    assert stats["model"] == name and stats["pairs"] > 0 and len(read_pairs(output, {})) == stats["pairs"]


def test_a_directory_that_is_not_a_finished_run_is_refused_before_sampling(tmp_path):
    make = load_script("scripts/make_pairs.py").make_pairs
    output = tmp_path / "pairs.jsonl"

    def refused(run):
        cfg = compose_config(*FAST_PAIRS[1:], f"run={run}", f"output={output}", config_name="make_pairs")
        with pytest.raises(RecipeError) as raised:
            make(cfg, progress=False)
        assert not output.exists()
        return str(raised.value)

    (tmp_path / "empty").mkdir()
    assert (
        refused(tmp_path / "empty")
        == f"run={tmp_path / 'empty'}: {tmp_path / 'empty'} is not a run directory: no config.yaml in it."
    )
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    OmegaConf.save(compose_config("method=dpo", "model=tiny-random"), unfinished / "config.yaml")
    assert refused(unfinished).endswith("has no model/: the run did not finish training (see its train.log).")
    reward_run = tmp_path / "rm-run"
    (reward_run / "model").mkdir(parents=True)
    OmegaConf.save(compose_config("method=rm", "model=tiny-random"), reward_run / "config.yaml")
    assert "is a reward model run (method=rm)" in refused(reward_run)
