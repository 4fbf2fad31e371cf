"""scripts/train_sft_then.py (`make train-sft-dpo`, `make train-sft-then method=kto`): each stage's overrides, the
second stage started from and measured against the first, nothing started after a failed SFT stage or over an
existing directory; and both stages end to end on the tiny model (slow)."""

import json
import math
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from prefopt.data import load_splits
from prefopt.evaluation.logprobs import pair_metrics
from prefopt.evaluation.models import PolicyAndReference
from prefopt.evaluation.runs import load_run
from tests.conftest import FAST, REPO, load_script, read_run

script = load_script("scripts/train_sft_then.py")
TINY = ["model=tiny-random", "logger=none"]


@pytest.fixture
def stages(monkeypatch):
    """The stages main() would run, as (name, overrides, run dir), each 'finishing' as `outcome` says."""
    ran, outcome = [], {"code": 0, "status": "completed"}

    def run_stage(name, overrides, run_dir, launch):
        ran.append((name, overrides, run_dir))
        if outcome["code"] == 0:
            (run_dir / "model").mkdir(parents=True)
            (run_dir / "metrics.json").write_text(json.dumps({"status": outcome["status"]}))
        return outcome["code"]

    monkeypatch.setattr(script, "run_stage", run_stage)
    return ran, outcome


def test_later_overrides_replace_a_key_and_its_sub_keys():
    common = ["model=tiny-random", "dataset=ultrafeedback", "dataset.path=/data/uf", "train.max_steps=4"]
    assert script.merged(["method=sft"], common, ["dataset=ultrachat", "train.max_steps=8"]) == [
        "method=sft",
        "model=tiny-random",
        "dataset=ultrachat",
        "train.max_steps=8",
    ]
    assert script.merged(common, ["dataset.path=/data/uf2"]) == [
        "model=tiny-random",
        "dataset=ultrafeedback",
        "train.max_steps=4",
        "dataset.path=/data/uf2",
    ]


def test_the_second_stage_keeps_training_the_sft_adapter_against_it(stages, tmp_path, capsys):
    ran, _ = stages
    code = script.main(
        ["kto", *TINY, "--sft-args", "train.max_steps=8", "--args", "method.beta=0.2", "--dir", str(tmp_path)]
    )
    assert code == 0, capsys.readouterr().err
    (sft_name, sft, sft_dir), (kto_name, kto, kto_dir) = ran
    assert (sft_dir, kto_dir) == (tmp_path / "sft", tmp_path / "kto")
    assert sft == ["method=sft", *TINY, "train.max_steps=8"]
    assert kto == ["method=kto", *TINY, "method.beta=0.2", "ref=sft_adapter", f"ref.adapter_path={sft_dir / 'model'}"]


def test_with_full_fine_tuning_the_second_stage_loads_the_sft_model(stages, tmp_path):
    ran, _ = stages
    assert script.main(["dpo", *TINY, "peft=none", "--dir", str(tmp_path)]) == 0
    sft_dir = ran[0][2]
    # tiny-random builds its weights from init_config: the saved folder must replace that, not the path alone.
    assert ran[1][1][-2:] == [f"model.path={sft_dir / 'model'}", "model.init_config=null"]


@pytest.mark.parametrize(("code", "status"), [(1, None), (0, "stopped: non-finite training loss (nan) at step 3")])
def test_a_failed_or_stopped_sft_stage_starts_nothing_else(stages, tmp_path, capsys, code, status):
    ran, outcome = stages
    outcome.update(code=code, status=status)
    assert script.main(["dpo", *TINY, "--dir", str(tmp_path)]) == (code or 1)
    assert [name for name, _, _ in ran] == ["stage 1 of 2, sft"]
    assert "the dpo stage was not started" in capsys.readouterr().err


def test_mistakes_stop_before_any_stage(stages, tmp_path, capsys):
    ran, _ = stages
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "sft").mkdir()
    cases = {
        "already holds runs": ["dpo", *TINY, "--dir", str(tmp_path / "old")],
        "method.betta": ["dpo", *TINY, "--args", "method.betta=0.1", "--dir", str(tmp_path / "a")],
        "method.beta=-1.0: must be > 0": ["dpo", *TINY, "--args", "method.beta=-1.0", "--dir", str(tmp_path / "b")],
        "method=orpo trains without a reference model": ["orpo", *TINY, "--dir", str(tmp_path / "c")],
        "sets each stage's method, run directory and reference": ["dpo", *TINY, "--args", "ref=precomputed"],
    }
    for expected, argv in cases.items():
        assert script.main(argv) == 2, expected
        assert expected in capsys.readouterr().err
    assert ran == []


def test_make_passes_each_variable_to_its_stage():
    result = subprocess.run(
        [
            "make",
            "-n",
            "train-sft-then",
            "method=ipo",
            "model=tiny-random",
            "SFT_ARGS=dataset=ultrachat",
            "ARGS=method.beta=0.5",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "scripts/train_sft_then.py ipo model=tiny-random --sft-args dataset=ultrachat --args method.beta=0.5" in (
        " ".join(result.stdout.split())
    )


@pytest.mark.slow
@pytest.mark.parametrize("peft", ["lora", "none"])
def test_sft_then_dpo_starts_at_ln2_against_the_sft_model(tmp_path, peft):
    """Both stages for real: the DPO stage's first loss is ln 2 (policy == reference == the SFT model)."""
    parent = tmp_path / "runs"
    common = [*FAST, "train.max_steps=3", "train.logging_steps=1", f"peft={peft}", "eval_generation.max_prompts=4"]
    # No LoRA dropout, so that policy and reference compute alike in training mode too.
    sft_args = ["train.learning_rate=1e-3", *(["peft.lora_dropout=0"] if peft == "lora" else [])]
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train_sft_then.py"), "dpo", *common, "--sft-args", *sft_args]
        + ["--args", "method.loss_type=[sigmoid]", "--dir", str(parent)],  # plain DPO: its loss starts at ln 2
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
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
