"""scripts/train.py end to end on the tiny model: `ref=sft_adapter`, `ref=model`, `ref=precomputed` on two DDP ranks."""

import math

import torch
from safetensors.torch import load_file

from prefopt.models import load_model
from tests.conftest import FAST, compose_config, read_run, run_train
from tests.prefopt.test_adapters import save_sft_adapter
from tests.scripts.test_train_distributed import train_on_two_ranks

LN2_FLOAT32 = float(torch.tensor(math.log(2), dtype=torch.float32))


def test_dpo_continues_an_sft_adapter_against_the_base_with_that_adapter(tmp_path):
    sft = save_sft_adapter(tmp_path / "sft")
    run_dir = tmp_path / "run"
    run_train(
        "method=dpo",
        "method.loss_type=[sigmoid]",  # plain DPO: its loss starts at ln 2
        *FAST,
        "ref=sft_adapter",
        f"ref.adapter_path={sft}",
        "eval_generation.max_prompts=4",
        f"hydra.run.dir={run_dir}",
    )
    metrics, config = read_run(run_dir)

    # Policy == reference before training: every log-ratio is 0 and the loss is exactly ln 2. Against the bare
    # base (the known trap) the SFT adapter's own log-ratios would move it (tests/prefopt/test_adapters.py checks
    # that this adapter changes the model's logits).
    before = metrics["before_training"]
    assert before["eval_loss"] == LN2_FLOAT32
    assert before["eval_rewards/margins"] == 0.0 and before["eval_rewards/chosen"] == 0.0
    assert metrics["eval_loss"] < before["eval_loss"]
    assert config["ref"] == {"name": "sft_adapter", "adapter_path": str(sft)}

    # The trained adapter continued from the SFT weights (4 steps at lr 1e-4 move them by ~1e-3 at most) ...
    start = load_file(sft / "adapter_model.safetensors")
    trained = load_file(run_dir / "model" / "adapter_model.safetensors")
    assert trained.keys() == start.keys()
    moved = [float((trained[k] - start[k]).abs().max()) for k in start]
    assert max(moved) < 1e-2 and min(moved) > 0, moved
    # ... and the reference TRL kept (saved as model/ref/) is the SFT adapter unchanged.
    reference = load_file(run_dir / "model" / "ref" / "adapter_model.safetensors")
    assert all(torch.equal(reference[k], start[k]) for k in start)
    assert (run_dir / "eval.json").is_file()


def test_dpo_against_a_separate_reference_model(tmp_path):
    cfg = compose_config("model=tiny-random")
    load_model(cfg.model, "fp32", seed=7).save_pretrained(tmp_path / "reference")
    run_dir = tmp_path / "run"
    run_train(
        "method=dpo",
        *FAST,
        "train.max_steps=2",
        "eval_generation.enabled=false",
        "ref=model",
        f"ref.path={tmp_path / 'reference'}",
        f"hydra.run.dir={run_dir}",
    )
    metrics, config = read_run(run_dir)

    assert metrics["status"] == "completed" and math.isfinite(metrics["eval_loss"])
    # Another random model as reference: the log-ratios are not 0 before training, so neither is the margin.
    assert abs(metrics["before_training"]["eval_loss"] - LN2_FLOAT32) > 1e-3
    assert metrics["before_training"]["eval_rewards/margins"] != 0.0
    assert config["ref"]["path"] == str(tmp_path / "reference")


def test_precomputed_reference_under_two_ranks_keeps_them_in_sync(tmp_path):
    """No reference model for accelerate to prepare: the evaluation before training must not cost DDP its wrapper."""
    run_dir = tmp_path / "run"
    train_on_two_ranks(tmp_path, "ref=precomputed", "method.loss_type=[sigmoid]", f"hydra.run.dir={run_dir}")
    assert read_run(run_dir)[0]["before_training"]["eval_loss"] == LN2_FLOAT32  # the precomputed reference is the start
