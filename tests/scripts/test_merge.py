"""scripts/merge.py: the merged standalone model answers exactly like base + adapter."""

import subprocess
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from prefopt.models import load_model
from tests.conftest import FAST, REPO, compose_config, load_script, run_train


def _merge(*args):
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "merge.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_merged_model_matches_the_adapter_and_carries_a_card(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_train("method=dpo", *FAST, "eval_generation.enabled=false", f"hydra.run.dir={run_dir}")
    result = _merge(run_dir)
    assert result.returncode == 0, result.stderr
    merged_dir = run_dir / "merged"
    assert (merged_dir / "model.safetensors").is_file() and not (merged_dir / "adapter_config.json").exists()

    cfg = compose_config("model=tiny-random")
    with_adapter = PeftModel.from_pretrained(load_model(cfg.model, "fp32", seed=cfg.train.seed), run_dir / "model")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    ids = AutoTokenizer.from_pretrained(merged_dir)("What is 2 + 3?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, with_adapter(ids).logits, atol=1e-5)

    card = (merged_dir / "README.md").read_text()
    assert "tags: [trl, dpo" in card and "beta 0.1" in card and "`eval_loss`" in card and "method:" in card

    merge = load_script("scripts/merge.py")  # the same entry point in-process: no second start-up of torch
    assert merge.main([str(run_dir)]) == 2 and "--force" in capsys.readouterr().err
    (merged_dir / "model.safetensors").unlink()
    assert merge.main([str(run_dir), "--force"]) == 0 and (merged_dir / "model.safetensors").is_file()
