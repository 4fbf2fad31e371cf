"""prefopt.adapters: which policy and reference each `ref=` choice builds, in one process and under data parallelism."""

import dataclasses
from pathlib import Path

import pytest
import torch
from peft import PeftModel, get_peft_model

from prefopt.adapters import build_policy_and_reference, lora_config, reference_for_evaluation
from prefopt.errors import RecipeError
from prefopt.models import load_model
from tests.conftest import compose_config, recipe_and_setup

IDS = torch.tensor([[5, 6, 7, 8, 9, 10, 11]])


def save_sft_adapter(folder: Path, seed: int = 1) -> Path:
    """A LoRA adapter (conf/peft/lora.yaml) on the tiny model with random non-zero B, standing in for SFT output."""
    cfg = compose_config("model=tiny-random")
    model = get_peft_model(load_model(cfg.model, "fp32", seed=cfg.train.seed), lora_config(cfg.peft))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    model.save_pretrained(folder)
    return folder


def build(*overrides, precision="fp32"):
    cfg = compose_config("model=tiny-random", *overrides)
    _, setup = recipe_and_setup(cfg)
    return cfg, build_policy_and_reference(cfg, dataclasses.replace(setup, precision=precision))


def logits(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.fixture(scope="module")
def sft_adapter(tmp_path_factory) -> Path:
    return save_sft_adapter(tmp_path_factory.mktemp("sft") / "adapter")


@pytest.fixture(scope="module")
def expected(sft_adapter):
    """Logits of the bare base and of base + SFT adapter, loaded independently of the code under test."""
    cfg = compose_config("model=tiny-random")
    base = logits(load_model(cfg.model, "fp32", seed=cfg.train.seed))
    with_sft = logits(PeftModel.from_pretrained(load_model(cfg.model, "fp32", seed=cfg.train.seed), str(sft_adapter)))
    assert (with_sft - base).abs().max() > 1e-2, "the SFT adapter must change the model for these tests to mean a thing"
    return base, with_sft


def test_sft_adapter_policy_continues_the_adapter_and_trl_keeps_the_reference(sft_adapter, expected):
    _, (model, ref_model, peft_config) = build("ref=sft_adapter", f"ref.adapter_path={sft_adapter}")
    assert isinstance(model, PeftModel) and list(model.peft_config) == ["default"]
    assert ref_model is None and peft_config is None  # TRL copies 'default' into a frozen 'ref' adapter itself
    assert torch.allclose(logits(model), expected[1], atol=1e-6)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_sft_adapter_under_data_parallelism_gets_a_separate_merged_reference(sft_adapter, expected, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    _, (model, ref_model, _) = build("ref=sft_adapter", f"ref.adapter_path={sft_adapter}")
    assert ref_model is not None and not isinstance(ref_model, PeftModel)  # TRL's fused forward needs a plain model
    assert not any(p.requires_grad for p in ref_model.parameters())
    assert torch.allclose(logits(ref_model), expected[1], atol=1e-5)  # base WITH the SFT adapter, not the bare base
    assert torch.allclose(logits(model), expected[1], atol=1e-6)


@pytest.mark.parametrize(
    ("overrides", "world_size", "separate_reference"),
    [
        (["peft=lora"], "1", False),  # the base with the adapter disabled
        (["peft=lora"], "2", True),  # DDP: adapter toggling would stop the gradient sync
        (["peft=none"], "1", True),  # full fine-tuning: a frozen copy
        (["peft=none", "ref=precomputed"], "1", False),
        (["peft=lora", "ref=precomputed"], "2", False),  # no adapter toggling during training
        (["method=orpo", "peft=none"], "2", False),  # no reference at all
    ],
)
def test_when_a_separate_reference_copy_is_loaded(overrides, world_size, separate_reference, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", world_size)
    cfg, (model, ref_model, peft_config) = build(*overrides)
    assert (ref_model is not None) == separate_reference
    assert (peft_config is None) == (cfg.peft.name == "none")
    if ref_model is not None:
        assert ref_model is not model and torch.equal(logits(ref_model), logits(model))


def test_ref_model_loads_the_other_weights(tmp_path):
    cfg = compose_config("model=tiny-random")
    load_model(cfg.model, "fp32", seed=7).save_pretrained(tmp_path / "other")
    _, (model, ref_model, peft_config) = build("ref=model", f"ref.path={tmp_path / 'other'}")
    assert peft_config is not None and not isinstance(model, PeftModel)
    assert torch.allclose(logits(ref_model), logits(load_model(cfg.model, "fp32", seed=7)))
    assert not torch.allclose(logits(ref_model), logits(model))


def test_ref_model_with_another_vocabulary_is_refused(tmp_path):
    cfg = compose_config("model=tiny-random", "model.init_config.vocab_size=200")
    load_model(cfg.model, "fp32").save_pretrained(tmp_path / "other")
    with pytest.raises(RecipeError, match=r"ref\.path=.*other has a vocabulary of 200 tokens, the policy 128"):
        build("ref=model", f"ref.path={tmp_path / 'other'}")


def test_evaluation_reference_is_base_with_sft_adapter_not_the_bare_base(sft_adapter, expected):
    cfg = compose_config("model=tiny-random", "ref=sft_adapter", f"ref.adapter_path={sft_adapter}")
    _, setup = recipe_and_setup(cfg)
    reference = reference_for_evaluation(cfg, setup, None, torch.device("cpu"))
    assert torch.allclose(logits(reference), expected[1], atol=1e-6)
    assert not any(p.requires_grad for p in reference.parameters())
    separate = torch.nn.Linear(1, 1)
    assert reference_for_evaluation(cfg, setup, separate, torch.device("cpu")) is separate


def test_evaluation_reference_is_the_disabled_adapter_or_the_starting_weights():
    lora = compose_config("model=tiny-random")
    assert reference_for_evaluation(lora, recipe_and_setup(lora)[1], None, torch.device("cpu")) is None
    full = compose_config("model=tiny-random", "method=orpo", "peft=none")  # no reference model was kept
    reference = reference_for_evaluation(full, recipe_and_setup(full)[1], None, torch.device("cpu"))
    assert torch.allclose(logits(reference), logits(load_model(full.model, "fp32", seed=full.train.seed)))
