"""prefopt.model_setup: one ModelSetup per config, what each `ref=`, `peft=` and process count resolve to."""

import pytest

from prefopt.run import trl_config
from tests.conftest import compose_config, recipe_and_setup


def setup_of(*overrides: str):
    return recipe_and_setup(compose_config("model=tiny-random", *overrides))[1]


@pytest.mark.parametrize(
    ("overrides", "world_size", "reference", "loads_reference_model", "memory"),
    [
        ((), 1, "adapter_disabled", False, "none"),
        (("peft=none",), 1, "copy", True, "copy"),
        ((), 2, "copy", True, "copy"),  # adapter switching would stop DDP's gradient sync
        (("ref=precomputed",), 1, "precomputed", False, "none"),
        (("ref=precomputed", "peft=none"), 1, "precomputed", False, "none"),
        (("ref=model", "ref.path=/weights"), 1, "model", True, "copy"),
        (("ref=sft_adapter", "ref.adapter_path=/adapter"), 1, "sft_adapter", False, "adapter"),
        (("ref=sft_adapter", "ref.adapter_path=/adapter"), 2, "sft_adapter", True, "adapter"),
        (("method=orpo",), 1, "none", False, "none"),
        (("method=simpo", "peft=none"), 2, "none", False, "none"),
        (("method=kto", "peft=none"), 1, "copy", True, "copy"),
    ],
)
def test_reference_kind(monkeypatch, overrides, world_size, reference, loads_reference_model, memory):
    monkeypatch.setenv("WORLD_SIZE", str(world_size))
    setup = setup_of(*overrides)
    assert setup.reference == reference
    assert setup.processes == world_size
    assert setup.loads_reference_model is loads_reference_model
    assert setup.reference_memory[0] == memory


def test_paths_adapters_and_precision_on_this_machine():
    model = setup_of("ref=model", "ref.path=/weights")
    assert (model.ref_path, model.sft_adapter_path) == ("/weights", None)
    sft = setup_of("ref=sft_adapter", "ref.adapter_path=/adapter")
    assert (sft.ref_path, sft.sft_adapter_path) == (None, "/adapter")
    qlora = setup_of("peft=qlora")
    assert qlora.quantized and qlora.trains_adapter and qlora.precision == "fp32" and qlora.use_cpu
    full = setup_of("peft=none")
    assert not full.quantized and not full.trains_adapter


def test_the_reasons_name_the_choice():
    assert setup_of("method=orpo").reference_memory[1] == "none (orpo has no reference model)"
    assert setup_of("peft=none").reference_memory[1] == "a frozen copy of the policy"
    assert setup_of("ref=model", "ref.path=/w").reference_memory[1] == "ref=model, assumed the policy's size"


def test_the_trl_config_reads_precision_and_the_precomputed_reference_from_the_setup():
    cfg = compose_config("model=tiny-random", "ref=precomputed")
    recipe, setup = recipe_and_setup(cfg)
    args = trl_config(cfg)
    assert args.precompute_ref_log_probs and args.use_cpu and not args.bf16 and not args.fp16
