"""prefopt/stages.py (`make train-sft-dpo`: method=sft-dpo): each stage's overrides, each stage started from and
measured against the one before, nothing started after a stage that did not complete, finished stages skipped on
resume; and both stages end to end through scripts/train.py on the tiny model (slow)."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prefopt.config import compose_config
from prefopt.data import load_splits
from prefopt.errors import RecipeError
from prefopt.evaluation.logprobs import pair_metrics
from prefopt.evaluation.models import PolicyAndReference
from prefopt.evaluation.runs import load_run
from prefopt.stages import stages
from tests.conftest import FAST, read_run, run_train

TINY = ["model=tiny-random", "logger=none"]


def staged(tmp_path: Path, *overrides: str, done: dict | None = None):
    """(stage name, its composed config) as scripts/train.py would train them; `done` maps a stage to the status
    its metrics.json gets once it has 'trained' (completed unless told)."""
    command = ["method=sft-dpo", *TINY, *overrides]
    result = []
    for stage in stages(compose_config(*command), tmp_path, command):
        result.append((stage.name, stage.cfg))
        stage.run_dir.mkdir(parents=True, exist_ok=True)
        status = (done or {}).get(stage.name, "completed")
        (stage.run_dir / "metrics.json").write_text(json.dumps({"status": status}))
    return result


def test_a_method_without_stages_is_one_stage_the_run_itself(tmp_path):
    cfg = compose_config(*TINY)
    (stage,) = stages(cfg, tmp_path, [])
    assert (stage.name, stage.cfg, stage.run_dir) == ("dpo", cfg, tmp_path)


def test_overrides_reach_every_stage_method_keys_the_last_and_a_stages_own_list_that_stage(tmp_path):
    (sft_name, sft), (dpo_name, dpo) = staged(
        tmp_path, "train.seed=7", "method.beta=0.2", 'method.stages.sft=["train.max_steps=8"]'
    )
    assert (sft_name, sft.method.name, dpo_name, dpo.method.name) == ("sft", "sft", "dpo", "dpo")
    assert sft.train.seed == dpo.train.seed == 7 and sft.model.name == dpo.model.name == "tiny-random"
    assert (sft.train.max_steps, dpo.train.max_steps) == (8, 60)  # dpo: its own budget (conf/budget/sft_term.yaml)
    assert dpo.method.beta == 0.2 and "beta" not in sft.method
    assert (sft.train.output_dir, dpo.train.output_dir) == (str(tmp_path / "sft"), str(tmp_path / "dpo"))
    # The second keeps training the SFT adapter, against a frozen copy of it.
    assert dict(dpo.ref) == {"name": "sft_adapter", "adapter_path": str(tmp_path / "sft" / "model")}


def test_with_full_fine_tuning_the_second_stage_loads_the_first_stages_model(tmp_path):
    _, (_, dpo) = staged(tmp_path, "peft=none")
    # tiny-random builds its weights from init_config: the saved folder must replace that, not the path alone.
    assert dpo.model.path == str(tmp_path / "sft" / "model") and dpo.model.init_config is None
    assert dpo.ref.name == "base"


@pytest.mark.parametrize("status", ["failed", "stopped: non-finite training loss (nan) at step 3"])
def test_a_stage_that_did_not_complete_starts_nothing_after_it(tmp_path, status):
    with pytest.raises(RecipeError, match=r"stage sft did not complete .* so stage dpo was not started"):
        staged(tmp_path, done={"sft": status})


def test_resuming_skips_the_stages_that_completed(tmp_path):
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "metrics.json").write_text(json.dumps({"status": "completed"}))
    ((name, dpo),) = staged(tmp_path, "train.resume=auto")
    assert name == "dpo" and dpo.train.resume is None  # a stage with no checkpoint yet starts afresh


def test_a_stage_override_that_is_not_a_list_is_named(tmp_path):
    with pytest.raises(RecipeError, match="method.stages.sft=3: give a list of Hydra overrides"):
        staged(tmp_path, "method.stages.sft=3")


@pytest.mark.slow
@pytest.mark.parametrize("peft", ["lora", "none"])
def test_sft_then_dpo_starts_at_ln2_against_the_sft_model(tmp_path, peft):
    """Both stages for real: the DPO stage's first loss is ln 2 (policy == reference == the SFT model)."""
    parent = tmp_path / "runs"
    common = [*FAST, "train.max_steps=3", "train.logging_steps=1", f"peft={peft}", "eval_generation.max_prompts=4"]
    # No LoRA dropout, so that policy and reference compute alike in training mode too.
    sft_args = ["train.learning_rate=1e-3", *(["peft.lora_dropout=0"] if peft == "lora" else [])]
    sft_list = "[" + ",".join(f'"{o}"' for o in sft_args) + "]"
    # Plain DPO: its loss starts at ln 2.
    run_train(
        "method=sft-dpo",
        *common,
        f"method.stages.sft={sft_list}",
        "method.loss_type=[sigmoid]",
        f"hydra.run.dir={parent}",
    )
    sft, sft_config = read_run(parent / "sft")
    dpo, dpo_config = read_run(parent / "dpo")
    assert (sft["method"], sft["status"], dpo["method"], dpo["status"]) == ("sft", "completed", "dpo", "completed")
    history = json.loads((parent / "dpo" / "log_history.json").read_text())["log_history"]
    first = next(entry for entry in history if "loss" in entry)
    assert first["step"] == 1 and first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert dpo["before_training"]["eval_loss"] == pytest.approx(math.log(2), abs=1e-6)
    # The DPO policy started as the SFT model: its held-out chosen log-probs are the SFT model's, not the base's.
    cfg, tokenizer, models = load_run(parent / "sft")
    _, pairs = load_splits(cfg.dataset, "paired")
    sft_logps = pair_metrics(models, tokenizer, pairs, 0.1, max_length=cfg.train.max_length)["chosen_logps"]
    with models.reference_model() as base:
        base_logps = pair_metrics(PolicyAndReference(base, base), tokenizer, pairs, 0.1)["chosen_logps"]
    assert dpo["before_training"]["eval_logps/chosen"] == pytest.approx(sft_logps, rel=1e-4)
    assert abs(sft_logps - base_logps) > 0.1
    sft_model = str(parent / "sft" / "model")
    if peft == "lora":
        assert dpo_config["ref"] == {"name": "sft_adapter", "adapter_path": sft_model}
        start = load_file(parent / "sft" / "model" / "adapter_model.safetensors")
        reference = load_file(parent / "dpo" / "model" / "ref" / "adapter_model.safetensors")
        assert reference.keys() == start.keys() and all(torch.equal(reference[k], start[k]) for k in start)
    else:
        assert dpo_config["model"]["path"] == sft_model and dpo_config["ref"]["name"] == "base"
    assert (parent / "sft" / "eval.json").is_file() and (parent / "dpo" / "eval.json").is_file()
