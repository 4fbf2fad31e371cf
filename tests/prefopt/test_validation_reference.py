"""prefopt.validation: the rules for `ref=` (conf/ref/), each asserted by its message."""

import pytest

from prefopt.errors import RecipeError
from prefopt.validation import _reference_problems, problems, validate
from tests.conftest import compose_config, recipe_and_setup
from tests.prefopt.test_adapters import save_sft_adapter


def found(*overrides):
    cfg = compose_config(*overrides)
    return problems(cfg, *recipe_and_setup(cfg))


@pytest.mark.parametrize("method", ["orpo", "simpo", "cpo"])
@pytest.mark.parametrize("ref", ["precomputed", "model", "sft_adapter"])
def test_reference_free_methods_accept_only_ref_base(method, ref):
    assert f"ref={ref}: method={method} trains without a reference model; drop ref= (ref=base)." in found(
        f"method={method}", f"ref={ref}"
    )


def test_reference_free_methods_with_ref_base_are_valid():
    assert found("method=orpo") == []


def test_sft_adapter_needs_lora_and_an_adapter_folder(tmp_path):
    assert found("ref=sft_adapter", "peft=none") == [
        "ref=sft_adapter keeps training a LoRA adapter: use peft=lora or peft=qlora, not peft=none.",
        "ref=sft_adapter needs ref.adapter_path=/path/to/sft/adapter (a PEFT folder with adapter_config.json).",
    ]
    assert found("ref=sft_adapter", f"ref.adapter_path={tmp_path}") == [
        f"ref.adapter_path={tmp_path}: no adapter_config.json there; point it at a PEFT adapter folder."
    ]
    adapter = save_sft_adapter(tmp_path / "adapter")
    assert found("ref=sft_adapter", f"ref.adapter_path={adapter}", "peft=qlora") == []


def test_sft_adapter_with_qlora_is_refused_under_data_parallelism(tmp_path, monkeypatch):
    adapter = save_sft_adapter(tmp_path / "adapter")
    monkeypatch.setenv("WORLD_SIZE", "2")  # only the reference rules: TRL's config would try to join a process group
    lora, qlora = (
        compose_config("ref=sft_adapter", f"ref.adapter_path={adapter}", f"peft={p}") for p in ("lora", "qlora")
    )
    assert _reference_problems(lora, *recipe_and_setup(lora)) == []
    (message,) = _reference_problems(qlora, *recipe_and_setup(qlora))
    assert message.startswith("ref=sft_adapter with peft=qlora runs in one process only (launcher=single)")


def test_ref_model_needs_an_existing_path(tmp_path):
    assert found("ref=model") == ["ref=model needs ref.path=<Hub id or local folder> of the reference model."]
    assert found("ref=model", f"ref.path={tmp_path}/missing") == [f"ref.path={tmp_path}/missing does not exist."]
    assert found("ref=model", f"ref.path={tmp_path}") == []


def test_reference_problems_stop_the_run_with_the_others():
    cfg = compose_config("method=orpo", "ref=precomputed", "method.beta=0")
    with pytest.raises(RecipeError, match=r"(?s)method\.beta=0.*ref=precomputed: method=orpo trains without"):
        validate(cfg, *recipe_and_setup(cfg))
