"""The files every run directory holds: config.yaml (resolved), metrics.json, model/ (with the manifest of what it
holds), the log, and eval.json once the trained model is evaluated (prefopt/evaluation)."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from prefopt import manifest
from prefopt.distributed import is_main_process
from prefopt.errors import RecipeError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
BEFORE_TRAINING_FILE = "before_training.json"
LOG_HISTORY_FILE = "log_history.json"
MODEL_DIR = "model"
MODEL_MANIFEST = "manifest.json"  # in model/: each file's name, size and checksum, written once model/ is saved
LOG_FILE = "train.log"
EVAL_FILE = "eval.json"  # the held-out evaluation of the trained model (prefopt/evaluation)

log = logging.getLogger("train")


def refuse_existing_run(run_dir: Path, resuming: bool = False) -> None:
    """A new run never writes over an earlier one's results; a resumed one only continues an unfinished run.

    Rank 0 alone checks: the other ranks of a launch start a moment later and would see rank 0's config.yaml.
    """
    if not is_main_process():
        return
    if resuming:
        if (run_dir / METRICS_FILE).exists():
            raise RecipeError(f"{run_dir} holds a finished run ({METRICS_FILE}): there is nothing to resume.")
        return
    taken = [name for name in (CONFIG_FILE, METRICS_FILE, MODEL_DIR) if (run_dir / name).exists()]
    if taken:
        raise RecipeError(
            f"{run_dir} already holds a run ({', '.join(taken)}). Pick a new directory with hydra.run.dir=... "
            f"or leave it out to get a fresh timestamped one."
        )


def read_status(run_dir: Path) -> str | None:
    """The status in a run directory's metrics.json (completed, stopped: ..., failed), None without one."""
    path = Path(run_dir) / METRICS_FILE
    try:
        return json.loads(path.read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader never sees half a file, and a crash leaves the old one. Rank 0 only."""
    if not is_main_process():
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def _finite(value):
    """NaN/inf become null: JSON has no spelling for them."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return None if isinstance(value, float) and not math.isfinite(value) else value


def evaluate_before_training(run) -> dict:
    """Held-out metrics of the untrained policy, computed once: a resumed run reuses the first run's numbers. Empty
    for a recipe with its own training loop (online DPO measures each round against the reference instead)."""
    path = run.run_dir / BEFORE_TRAINING_FILE
    if path.is_file():
        return json.loads(path.read_text())
    metrics = run.evaluate()
    write_json(path, metrics)
    return metrics


def run_status(run) -> str:
    """completed, or why a callback (the training-health monitor) stopped the run early, or why nothing trained."""
    reasons = [c.stopped_reason for c in run.callbacks if getattr(c, "stopped_reason", None)]
    if reasons:
        return f"stopped: {reasons[0]}"
    return "completed" if run.trainer is not None else "nothing trained"


def save_model(run) -> str:
    """The trained model (or adapter) and tokenizer into model/ when training completed; returns the run's status."""
    status = run_status(run)
    if status != "completed":  # broken weights are not a model: the last complete checkpoint, if any, is what is kept
        log.error("%s: model/ not saved; complete checkpoints in %s are the last good weights", status, run.run_dir)
        return status
    run.trainer.save_model(str(run.run_dir / MODEL_DIR))
    if is_main_process():
        run.tokenizer.save_pretrained(str(run.run_dir / MODEL_DIR))
    record_model(run.run_dir, run.trainer.state.global_step)  # model/manifest.json: what make eval/merge verify
    return status


def run_metrics(run, status: str, train_metrics: dict, before: dict, after: dict, wall_time_s: float) -> dict:
    """metrics.json: what trained on what, TRL's final train and eval metrics, the held-out metrics before training."""
    cfg = run.cfg
    return {
        "method": cfg.method.name,
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "peft": cfg.peft.name,
        "beta": cfg.method.get("beta"),
        "precision": run.setup.precision,
        "status": status,
        **train_metrics,
        **after,
        "before_training": before,
        "wall_time_s": round(wall_time_s, 1),
    }


def write_metrics(run, metrics: dict) -> None:
    """metrics.json, and log_history.json: every line the trainer logged."""
    write_json(run.run_dir / METRICS_FILE, metrics)
    write_json(run.run_dir / LOG_HISTORY_FILE, {"log_history": run.history})


def record_failed_job(run_dir: Path, cfg: DictConfig, exc: Exception) -> None:
    """A failed job of a multirun sweep: logged, and its metrics.json says why (unless the run wrote its own)."""
    from prefopt.errors import RunInterrupted

    reason = str(exc) if isinstance(exc, RecipeError) else f"{type(exc).__name__}: {exc}"
    log.exception("job failed: %s", reason)
    if not isinstance(exc, RunInterrupted) and not (run_dir / METRICS_FILE).exists():
        write_json(run_dir / METRICS_FILE, {"status": "failed", "error": reason, "method": cfg.method.name})


def save_config(cfg: DictConfig, run_dir: Path) -> None:
    if not is_main_process():
        return
    OmegaConf.save(cfg, run_dir / CONFIG_FILE, resolve=True)


def record_model(run_dir: Path, step: int | None) -> None:
    """model/manifest.json, after the trained model and tokenizer are saved into model/. Rank 0 only."""
    if is_main_process():
        model_dir = Path(run_dir) / MODEL_DIR
        manifest.write(model_dir, model_dir / MODEL_MANIFEST, step=step)


def check_model(run_dir: Path, checksums: bool = True) -> None:
    """Stop, naming the file and what to do, when a run's model/ is missing or damaged: before anything loads it.

    Against model/manifest.json (sizes, then with `checksums` every file's bytes); a model/ saved without one gets the
    structure checks of its weights files alone (prefopt/manifest.py)."""
    run_dir = Path(run_dir)
    model_dir = run_dir / MODEL_DIR
    if not model_dir.is_dir():
        raise RecipeError(_missing_model(run_dir))
    damage = manifest.find_damage(model_dir, model_dir / MODEL_MANIFEST, checksums=checksums)
    if damage is None and not any(model_dir.glob("*.safetensors")):
        damage = manifest.Damage("*.safetensors", "is missing: model/ holds no weights")
    if damage is not None:
        raise RecipeError(f"{model_dir / damage.name} {damage.problem}. {_restore_model(run_dir, damage.name)}")


def _missing_model(run_dir: Path) -> str:
    from prefopt.checkpoints import newest_intact_checkpoint, resume_command

    status = _read_json(run_dir / METRICS_FILE).get("status")
    if status is None:
        message = f"{run_dir} has no {MODEL_DIR}/: the run did not finish training (see its {LOG_FILE})."
        checkpoint = newest_intact_checkpoint(run_dir)
        if checkpoint is not None:
            message += f" Continue it from {checkpoint.name} with\n  {resume_command(_overrides(run_dir), run_dir)}"
        return message
    if status != "completed":
        return (
            f"{run_dir} has no {MODEL_DIR}/: the run ended with status '{status}' and saved none (see its {LOG_FILE})."
        )
    return f"{run_dir} has no {MODEL_DIR}/ although the run completed. {_restore_model(run_dir, None)}"


def _restore_model(run_dir: Path, name: str | None) -> str:
    """What to do about model/, or its file `name`, lost or damaged in a finished run."""
    from prefopt.checkpoints import newest_intact_checkpoint, resume_command, step_of

    checkpoint = newest_intact_checkpoint(run_dir)
    if checkpoint is None:
        return f"No intact checkpoint is in {run_dir}: copy {MODEL_DIR}/ again from where the run was trained."
    model_dir = run_dir / MODEL_DIR
    if name is not None and _same_file(checkpoint / name, model_dir, name, run_dir):
        return (
            f"{checkpoint} holds an intact copy of it: copy it back with\n  cp {checkpoint / name} {model_dir / name}"
        )
    new_dir = run_dir.with_name(f"{run_dir.name}-from-{checkpoint.name}")
    return (
        f"Copy {MODEL_DIR}/ again from where the run was trained, or train again from {checkpoint.name}, the newest "
        f"intact checkpoint (step {step_of(checkpoint)}), into a new directory with\n"
        f"  {resume_command(_overrides(run_dir), new_dir, checkpoint)}"
    )


def _same_file(candidate: Path, model_dir: Path, name: str, run_dir: Path) -> bool:
    """Whether `candidate` is the file model/`name` was when saved: by its checksum in model/manifest.json, or (a
    model/ saved without one) by its checkpoint being the run's last step, whose weights model/ holds too."""
    from prefopt.checkpoints import step_of

    if not candidate.is_file():
        return False
    try:
        recorded = manifest.read(model_dir / MODEL_MANIFEST)
    except (OSError, ValueError):
        recorded = None
    if recorded is not None:
        entry = recorded["files"].get(name)
        return entry is not None and manifest.checksum(candidate) == entry[manifest.CHECKSUM]
    history = _read_json(run_dir / LOG_HISTORY_FILE).get("log_history") or [{}]
    return history[-1].get("step") == step_of(candidate.parent)


def _overrides(run_dir: Path) -> list[str]:
    """The command-line overrides the run was started with (Hydra's record of them)."""
    try:
        overrides = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "overrides.yaml"))
    except (OSError, ValueError):
        overrides = None
    return [str(o) for o in overrides] if isinstance(overrides, list) else ["..."]  # ...: the reader fills them in


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
