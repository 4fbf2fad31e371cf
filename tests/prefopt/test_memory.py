"""prefopt/memory.py: the estimate against measured GPU peaks, the picker, and the presets applied to the config."""

import dataclasses

import pytest

from prefopt.errors import RecipeError
from prefopt.memory import BUSY_TOKENS, Setup, estimate, fit_hardware, micro_batch_tokens, model_shape, pick, plan
from prefopt.model_setup import resolve_model_setup
from prefopt.recipe import load_recipe
from prefopt.run import trl_config
from prefopt.trl_args import trl_kwargs
from tests.conftest import CONF, compose_config, recipe_and_setup

# Peak torch.cuda.max_memory_allocated, plain TRL 1.16 DPO on a random-init Llama-3-8B shape, LoRA r16 all-linear,
# bf16, 4 pairs x 2 x 1024 tokens per step (docs/performance.md).
MEASURED_GIB = {("lora", True): 20.1, ("lora", False): 69.6, ("qlora", True): 9.5}
QLORA_FOOTPRINT_GIB = 5.2  # model.get_memory_footprint() of the nf4 double-quantized model


def llama3_8b(**changes) -> Setup:
    shape = model_shape(compose_config("model=llama3-8b").model)
    return dataclasses.replace(Setup(shape=shape, precision="bf16", peft="lora", lora_r=16, max_length=1024), **changes)


@pytest.mark.parametrize(("peft", "checkpointing"), sorted(MEASURED_GIB))
def test_estimate_lands_within_10_percent_of_the_measured_peaks(peft, checkpointing):
    total = estimate(llama3_8b(peft=peft), micro_batch=4, checkpointing=checkpointing).total
    assert total == pytest.approx(MEASURED_GIB[peft, checkpointing], rel=0.10)


def test_qlora_weights_match_the_measured_footprint():
    # The estimate also counts the quantization constants, which get_memory_footprint leaves out (~0.1 GiB).
    assert estimate(llama3_8b(peft="qlora"), 1, True).weights == pytest.approx(QLORA_FOOTPRINT_GIB, rel=0.05)


@pytest.mark.parametrize(
    ("model", "billions"),
    [
        ("llama3-8b", 8.03),
        ("llama3.1-8b-instruct", 8.03),
        ("mistral-7b-instruct", 7.25),
        ("zephyr-7b-sft", 7.24),
        ("qwen2.5-7b-instruct", 7.62),
        ("qwen2.5-0.5b-instruct", 0.494),
        ("smollm2-135m", 0.1345),
    ],
)
def test_every_model_config_has_a_shape_with_the_published_size(model, billions):
    shape = model_shape(compose_config(f"model={model}").model)
    assert shape.num_parameters / 1e9 == pytest.approx(billions, rel=0.01)


def test_reference_copy_and_full_fine_tuning_state_are_counted():
    lora, full = estimate(llama3_8b(), 1, True), estimate(llama3_8b(peft="none", reference="copy"), 1, True)
    assert lora.reference == 0 and full.reference == full.weights
    assert full.training_state == pytest.approx(3 * full.weights)  # bf16 gradients and two AdamW moments
    assert lora.training_state < 1  # 42M fp32 adapter parameters: weights, gradients, moments


@pytest.mark.parametrize("effective", [1, 6, 8, 12, 32])
def test_picker_keeps_the_effective_batch_and_drops_checkpointing_only_where_the_gpu_stays_busy(effective):
    setup = llama3_8b()  # 1,024-token rows: 2,048 tokens a pair
    divisors = [m for m in range(1, effective + 1) if effective % m == 0]
    for budget in (20, 37, 75):
        choice = pick(setup, effective, budget)
        assert choice is not None and choice.micro_batch * choice.accumulation == effective
        assert effective % choice.micro_batch == 0 and choice.estimate.total <= budget
        fits = {ckpt: [m for m in divisors if estimate(setup, m, ckpt).total <= budget] for ckpt in (False, True)}
        largest = {ckpt: max(fits[ckpt], default=0) for ckpt in (False, True)}
        assert choice.micro_batch == largest[choice.checkpointing], "not the largest that fits"
        busy = micro_batch_tokens(setup, largest[False]) >= BUSY_TOKENS
        assert choice.checkpointing == (not fits[False] or (not busy and largest[False] < largest[True]))


def test_the_measured_h200_case_keeps_checkpointing_rather_than_one_pair_per_micro_batch():
    """4 pairs of 1,024-token rows, LoRA on the 8B shape: in 40 GiB only micro-batch 1 fits without checkpointing,
    which ran at 0.69x of 4 pairs with it on an H200; with 75 GiB all 4 fit without it (1.24x)."""
    setup = llama3_8b()
    in_40 = pick(setup, 4, 40)
    assert estimate(setup, 1, False).total <= 40 < estimate(setup, 2, False).total
    assert (in_40.micro_batch, in_40.checkpointing) == (4, True)
    in_75 = pick(setup, 4, 75)
    assert (in_75.micro_batch, in_75.checkpointing) == (4, False)


def test_picker_returns_none_when_nothing_fits():
    assert pick(llama3_8b(peft="none", reference="copy"), 8, 22) is None


def test_bigger_preset_picks_a_bigger_micro_batch_or_drops_checkpointing():
    configs = [
        compose_config("model=llama3-8b", "peft=lora", f"hardware={hw}", "train.max_length=1024")
        for hw in ("24gb", "80gb")
    ]
    small, big = (plan(cfg, *recipe_and_setup(cfg)).choice for cfg in configs)
    assert big.micro_batch > small.micro_batch or (small.checkpointing and not big.checkpointing)


def test_preset_choice_reaches_the_trl_config_and_launcher_keys_do_not():
    cfg = compose_config(
        "model=llama3-8b",
        "hardware=24gb",
        "train.per_device_train_batch_size=4",
        "train.gradient_accumulation_steps=4",
        "train.activation_checkpointing=true",
    )
    recipe = load_recipe(cfg.method.recipe)
    fit_hardware(cfg, recipe, resolve_model_setup(cfg, recipe))
    args = trl_config(cfg)
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 16
    expected = plan(cfg, recipe, resolve_model_setup(cfg, recipe)).choice
    chosen = (args.per_device_train_batch_size, args.activation_checkpointing)
    assert chosen == (expected.micro_batch, expected.checkpointing)
    assert not {"hardware", "dry_run", "memory_gib", "headroom_gib"} & set(trl_kwargs(cfg, *recipe_and_setup(cfg)))


def test_kto_keeps_at_least_two_rows_per_micro_batch():
    cfg = compose_config(
        "method=kto", "model=llama3-8b", "hardware=24gb", "train.max_length=4096", "train.per_device_train_batch_size=8"
    )
    recipe = load_recipe(cfg.method.recipe)
    fit_hardware(cfg, recipe, resolve_model_setup(cfg, recipe))
    assert cfg.train.per_device_train_batch_size >= 2


def test_full_fine_tuning_of_an_8b_model_on_24gb_fails_early_with_what_to_do():
    cfg = compose_config("model=llama3-8b", "peft=none", "hardware=24gb")
    with pytest.raises(RecipeError, match=r"hardware=24gb: .*llama3-8b.* does not fit in 22 GiB") as info:
        fit_hardware(cfg, *recipe_and_setup(cfg))
    assert "peft=lora or peft=qlora" in str(info.value) and "ref=precomputed" in str(info.value)


def test_no_preset_leaves_the_train_section_as_written_and_needs_no_shape():
    cfg = compose_config("model=llama3-8b", "model.shape=null", "train.activation_checkpointing=true")
    before = dict(cfg.train)
    fit_hardware(cfg, *recipe_and_setup(cfg))
    assert dict(cfg.train) == before
    with pytest.raises(RecipeError, match="shape: block"):
        plan(cfg, *recipe_and_setup(cfg))


def test_report_shows_every_part_and_the_budget():
    cfg = compose_config("model=llama3-8b", "peft=qlora", "hardware=24gb")
    text = plan(cfg, *recipe_and_setup(cfg)).report()
    for part in (
        "weights (nf4 + bf16)",
        "adapters r16, bf16",
        "reference: none",
        "activations",
        "of 22 GiB",
        "chosen:",
    ):
        assert part in text


def test_every_preset_opens_with_how_to_run_it():
    for path in sorted((CONF / "hardware").glob("*.yaml")):
        assert path.read_text().startswith("# "), path.name
