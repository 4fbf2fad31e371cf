"""Merge a run's LoRA adapter into its base model and save a standalone model with a model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from prefopt.errors import RecipeError
from prefopt.models import load_model, load_tokenizer
from prefopt.run_files import CONFIG_FILE, METRICS_FILE, MODEL_DIR, check_model

CARD_METRICS = ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins", "train_loss")


def merge_run(run_dir: Path, out_dir: Path, force: bool = False) -> Path:
    """`<run dir>/model` (adapter) + base -> `out_dir`: safetensors weights, tokenizer and README.md model card.

    QLoRA adapters merge into the unquantized base: merging into 4-bit weights would round the update away.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    adapter_dir = run_dir / MODEL_DIR
    check_model(run_dir)  # a missing or damaged file is named, with what to do, before the base model loads
    if not (adapter_dir / "adapter_config.json").is_file():
        raise RecipeError(f"{adapter_dir} holds no LoRA adapter (peft=none runs are standalone already).")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not force:
            raise RecipeError(f"{out_dir} exists and is not empty: choose another out= or pass --force.")
        shutil.rmtree(out_dir)
    from peft import PeftModel

    cfg = OmegaConf.load(run_dir / CONFIG_FILE)
    base = load_model(cfg.model, "fp32", seed=cfg.train.seed)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)
    load_tokenizer(cfg.model).save_pretrained(out_dir)
    metrics = json.loads((run_dir / METRICS_FILE).read_text()) if (run_dir / METRICS_FILE).is_file() else {}
    (out_dir / "README.md").write_text(model_card(cfg, metrics, (run_dir / CONFIG_FILE).read_text()))
    return out_dir


def model_card(cfg, metrics: dict, config_yaml: str) -> str:
    base = cfg.model.get("path") or cfg.model.name
    rows = "\n".join(f"| `{k}` | {metrics[k]:.4f} |" for k in CARD_METRICS if isinstance(metrics.get(k), (int, float)))
    return f"""---
library_name: transformers
base_model: {base}
tags: [trl, {cfg.method.name}, preference-optimization]
---
# {cfg.model.name} + {cfg.method.name} (merged LoRA)

Trained with `{cfg.method.name}` (beta {cfg.method.get("beta")}) on `{cfg.dataset.name}`, LoRA r{cfg.peft.get("r")}
merged into the base weights. Produced by `make merge` of this repository.

| metric | value |
| --- | --- |
{rows}

## Resolved training config

```yaml
{config_yaml.strip()}
```
"""


def push_to_hub(out_dir: Path, repo_id: str) -> None:
    """Upload a merged model folder (needs HF_TOKEN and network)."""
    from huggingface_hub import HfApi

    HfApi().create_repo(repo_id, exist_ok=True)
    HfApi().upload_folder(folder_path=str(out_dir), repo_id=repo_id)
