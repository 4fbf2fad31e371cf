"""scripts/train.py end to end, in a fresh process, on the tiny random model: every method, overrides, multirun."""

import json
import math

import pytest
import torch
import yaml
from peft import PeftModel
from safetensors.torch import load_file

from prefopt.models import load_model
from prefopt.recipe import load_recipe
from tests.conftest import FAST, compose_config, read_run, run_train

METHOD_METRICS = {
    "dpo": ["eval_rewards/accuracies", "eval_rewards/margins", "eval_logps/chosen"],
    "ipo": ["eval_rewards/accuracies", "eval_rewards/margins"],
    "kto": ["eval_rewards/chosen", "eval_rewards/rejected", "eval_kl"],
    "orpo": ["eval_rewards/accuracies", "eval_nll_loss", "eval_log_odds_ratio"],
}


@pytest.mark.parametrize("method", sorted(METHOD_METRICS))
def test_each_method_trains_and_writes_a_complete_run_directory(method, run_dir):
    run_train(f"method={method}", *FAST, f"hydra.run.dir={run_dir}")
    metrics, config = read_run(run_dir)

    assert (metrics["method"], metrics["model"], metrics["status"]) == (method, "tiny-random", "completed")
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["eval_loss"])
    for key in METHOD_METRICS[method]:
        assert math.isfinite(metrics[key]), key
    declared = load_recipe(config["method"]["recipe"]).logged_metrics  # what the library relies on
    assert [name for name in declared if f"eval_{name}" not in metrics] == []
    assert math.isfinite(metrics["before_training"]["eval_loss"])
    assert metrics["eval_loss"] < metrics["before_training"]["eval_loss"], "training did not lower the held-out loss"
    assert metrics["wall_time_s"] > 0
    assert config["method"]["name"] == method and config["train"]["output_dir"] == str(run_dir)
    assert (run_dir / "train.log").stat().st_size > 0

    # The LoRA B matrices start at zero: non-zero ones mean the trainable weights moved.
    adapter = load_file(run_dir / "model" / "adapter_model.safetensors")
    lora_b = [t for name, t in adapter.items() if "lora_B" in name]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)


def test_saved_adapter_reloads_onto_the_base_model(run_dir):
    run_train("method=dpo", *FAST, f"hydra.run.dir={run_dir}")
    cfg = compose_config("model=tiny-random")
    base = load_model(cfg.model, "fp32", seed=cfg.train.seed)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    before = base(ids).logits
    tuned = PeftModel.from_pretrained(base, run_dir / "model")
    assert not torch.allclose(tuned(ids).logits, before)


def test_full_parameter_training_keeps_a_separate_reference(run_dir):
    run_train("method=dpo", "peft=none", *FAST, f"hydra.run.dir={run_dir}")
    metrics, _ = read_run(run_dir)
    assert metrics["peft"] == "none" and metrics["eval_loss"] < metrics["before_training"]["eval_loss"]
    assert (run_dir / "model" / "model.safetensors").is_file()


def test_multirun_gives_one_complete_directory_per_beta(tmp_path):
    sweep = tmp_path / "sweep"
    run_train("-m", "method.beta=0.05,0.5", *FAST, "train.max_steps=2", f"hydra.sweep.dir={sweep}")
    betas = []
    for job in ("0", "1"):
        metrics, config = read_run(sweep / job)
        assert metrics["status"] == "completed" and (sweep / job / "model").is_dir()
        betas.append(config["method"]["beta"])
    assert betas == [0.05, 0.5]


def test_an_existing_run_directory_is_never_overwritten(run_dir):
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text('{"mine": 1}')
    result = run_train("method=dpo", *FAST, f"hydra.run.dir={run_dir}", check=False)
    assert result.returncode == 2
    assert "already holds a run" in result.stderr + result.stdout
    assert json.loads((run_dir / "metrics.json").read_text()) == {"mine": 1}


def test_hub_model_offline_stops_early_with_a_clear_message(run_dir):
    result = run_train("model=llama3-8b", "logger=none", f"hydra.run.dir={run_dir}", check=False)
    output = result.stderr + result.stdout
    assert result.returncode == 2
    assert "llama3-8b" in output and "model.path=/path/to/weights" in output
    assert "Traceback" not in output
    assert not (run_dir / "config.yaml").exists()


def test_unknown_override_key_fails_before_training(run_dir):
    result = run_train("method.betta=0.2", *FAST, f"hydra.run.dir={run_dir}", check=False)
    assert result.returncode != 0 and "betta" in result.stderr
    assert not (run_dir / "metrics.json").exists()


def test_wandb_logs_offline_into_the_run_directory(run_dir):
    run_train("method=dpo", *FAST, "logger=wandb", f"hydra.run.dir={run_dir}")
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    history = runs[0] / f"run-{runs[0].name.split('-')[-1]}.wandb"
    assert history.is_file() and history.stat().st_size > 0
    data = history.read_bytes()
    for name in (b"rewards/chosen", b"rewards/rejected", b"rewards/margins", b"rewards/accuracies", b"logps/chosen"):
        assert name in data, name
    assert b"dpo-tiny-random-beta0.1" in data  # the run name says method, model and beta
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["logger"]["name"] == "wandb"


def test_qlora_trains_on_cpu(run_dir):
    run_train("method=dpo", "peft=qlora", *FAST, f"hydra.run.dir={run_dir}")
    metrics, config = read_run(run_dir)
    assert config["peft"]["load_in_4bit"] is True
    assert metrics["eval_loss"] < metrics["before_training"]["eval_loss"]


def test_a_diverging_run_is_stopped_and_its_broken_weights_are_not_saved(run_dir):
    run_train(
        "method=dpo",
        *FAST,
        "train.max_steps=8",
        "train.learning_rate=1e30",
        "train.logging_steps=1",
        f"hydra.run.dir={run_dir}",
    )
    metrics, _ = read_run(run_dir)
    assert metrics["status"].startswith("stopped: non-finite training loss")
    assert not (run_dir / "model").exists() and not (run_dir / "eval.json").exists()
