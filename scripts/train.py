"""Train one preference-optimization recipe: `python scripts/train.py method=dpo model=smollm2-135m`.

Override anything Hydra knows (`method.beta=0.05 train.max_steps=20 peft=none logger=none`), or sweep
with `-m method.beta=0.05,0.1`. Writes config.yaml, metrics.json, model/ and train.log to the run directory.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from recipes import load_recipe  # noqa: E402
from recipes.adapters import lora_config, quantization_config  # noqa: E402
from recipes.data import load_splits  # noqa: E402
from recipes.errors import RecipeError  # noqa: E402
from recipes.models import check_available, load_model, load_tokenizer, pick_precision  # noqa: E402
from recipes.run_files import MODEL_DIR, METRICS_FILE, refuse_existing_run, save_config, write_json  # noqa: E402
from recipes.tracking import finish_wandb, start_wandb  # noqa: E402
from recipes.trl_args import run_name  # noqa: E402
from recipes.validation import validate  # noqa: E402

log = logging.getLogger("train")


def train(cfg: DictConfig, run_dir: Path) -> dict:
    started = time.time()
    recipe = load_recipe(cfg.method.recipe)
    validate(cfg, recipe)
    refuse_existing_run(run_dir)
    check_available(cfg.model)
    save_config(cfg, run_dir)

    precision = pick_precision(cfg.precision)
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, precision, quantization_config(cfg.peft, precision), seed=cfg.train.seed)
    peft_config = lora_config(cfg.peft)
    # Full-parameter training keeps a frozen copy as the reference; with LoRA the trainer disables the adapter instead.
    needs_ref_copy = recipe.USES_REFERENCE and peft_config is None
    ref_model = load_model(cfg.model, precision, seed=cfg.train.seed) if needs_ref_copy else None
    train_data, eval_data = load_splits(cfg.dataset, recipe.DATA_FORMAT)
    log.info("data: %d train / %d eval rows (%s)", len(train_data), len(eval_data), recipe.DATA_FORMAT)

    start_wandb(cfg, run_dir, run_name(cfg))
    trainer = recipe.build_trainer(
        cfg, model=model, ref_model=ref_model, tokenizer=tokenizer,
        train_dataset=train_data, eval_dataset=eval_data, peft_config=peft_config, callbacks=None,
    )
    before = trainer.evaluate(metric_key_prefix="eval") if cfg.eval_before_training else {}
    train_metrics = trainer.train().metrics
    after = trainer.evaluate(metric_key_prefix="eval")
    trainer.save_model(str(run_dir / MODEL_DIR))
    tokenizer.save_pretrained(str(run_dir / MODEL_DIR))

    metrics = {
        "method": cfg.method.name, "model": cfg.model.name, "dataset": cfg.dataset.name, "peft": cfg.peft.name,
        "beta": cfg.method.get("beta"), "precision": precision, "status": "completed",
        **train_metrics, **after,
        "before_training": before, "wall_time_s": round(time.time() - started, 1),
    }
    write_json(run_dir / METRICS_FILE, metrics)
    log.info("run directory: %s", run_dir)
    return metrics


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        metrics = train(cfg, run_dir)
        finish_wandb(0)
        return metrics.get("eval_loss")  # what a Hydra sweeper minimizes
    except Exception as exc:
        finish_wandb(1)
        reason = str(exc) if isinstance(exc, RecipeError) else f"{type(exc).__name__}: {exc}"
        if multirun:
            # One failed job must not end the sweep: record it and let the others run.
            log.exception("job failed: %s", reason)
            if not (run_dir / METRICS_FILE).exists():
                write_json(run_dir / METRICS_FILE, {"status": "failed", "error": reason, "method": cfg.method.name})
            return None
        if isinstance(exc, RecipeError):
            log.error("%s", reason)
            sys.exit(2)
        raise


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
