"""Methods in stages: a method config with `stages` trains each stage in turn, in a folder of its own inside the run
directory, each starting from the model the stage before saved and measured against it (SFT, then DPO: the
alignment-handbook's order). conf/method/sft-dpo.yaml declares one:

    defaults: [dpo, _self_]   # the last stage trains as conf/method/dpo.yaml says: method.* overrides reach it
    name: sft-dpo
    stages:                   # in order: a method config each, with Hydra overrides for that stage alone
      sft: []
      dpo: []

Every other override on the command line (model=, dataset=, peft=, train.*, ...) reaches every stage. A stage that
did not complete starts nothing after it; `train.resume=auto` skips the stages that completed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from prefopt.checkpoints import complete_checkpoints
from prefopt.config import override_key
from prefopt.errors import RecipeError
from prefopt.run_files import METRICS_FILE, MODEL_DIR, read_status

log = logging.getLogger("train")


@dataclass(frozen=True)
class Stage:
    name: str
    cfg: DictConfig
    run_dir: Path


def stage_names(method: DictConfig) -> list[str]:
    """The stages a method config declares, in order; [] for a method trained in one go."""
    stages = method.get("stages")
    return list(stages) if stages else []


def stages(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None) -> Iterator[Stage]:
    """The run's stages, each composed once the stage before it completed. A method without stages is one stage:
    the run itself. `overrides` are the run's command line (Hydra's, when this process is a Hydra job)."""
    names = stage_names(cfg.method)
    if not names:
        yield Stage(cfg.method.name, cfg, run_dir)
        return
    overrides = _task_overrides() if overrides is None else overrides
    resuming = bool(cfg.train.get("resume"))
    previous: Path | None = None
    for index, name in enumerate(names):
        stage_dir = run_dir / name
        if previous is not None:
            _require_completed(previous, name)
        if resuming and read_status(stage_dir) == "completed":
            log.info("stage %s completed before: %s", name, stage_dir)
        else:
            last = index == len(names) - 1
            stage_overrides = _stage_overrides(cfg, name, overrides, last, stage_dir, previous)
            log.info("stage %d of %d, %s: %s", index + 1, len(names), name, " ".join(stage_overrides))
            yield Stage(name, compose_stage(stage_overrides), stage_dir)
        previous = stage_dir


def _stage_overrides(
    cfg: DictConfig, name: str, overrides: list[str], last: bool, stage_dir: Path, previous: Path | None
) -> list[str]:
    """method=<stage>; the run's overrides but its method choice (and its method.* keys, except on the last stage);
    the stage's own; its run directory; and what makes the stage before its start and reference."""
    own = cfg.method.stages[name]
    own = OmegaConf.to_container(own, resolve=True) if OmegaConf.is_config(own) else own or []
    if not isinstance(own, list) or not all(isinstance(o, str) for o in own):
        raise RecipeError(
            f"method.stages.{name}={own!r}: give a list of Hydra overrides for that stage, e.g. "
            f"'method.stages.{name}=[\"train.max_steps=20\"]'."
        )
    keys = [override_key(o) for o in overrides]
    shared = [
        o
        for o, key in zip(overrides, keys)
        if key != "method"
        and not key.startswith(("method.stages", "hydra."))
        and (last or not key.startswith("method."))
    ]
    if cfg.logger.name == "wandb" and not cfg.logger.get("group"):
        shared.append(f"logger.group={cfg.method.name}-{stage_dir.parent.name}")  # the stages side by side in W&B
    if cfg.train.get("resume") and not complete_checkpoints(stage_dir):
        shared.append("train.resume=null")  # resuming the run: a stage that saved no checkpoint starts afresh
    start = start_from(previous / MODEL_DIR, cfg) if previous is not None else []
    return [f"method={name}", *shared, *own, f"train.output_dir={stage_dir}", *start]


def start_from(model_dir: Path, cfg: DictConfig) -> list[str]:
    """Overrides that make a saved model the stage's start and its reference: with LoRA, keep training its adapter,
    the reference a frozen copy of it (ref=sft_adapter); with peft=none, load the saved folder (model.path=), whose
    frozen copy is the reference."""
    if cfg.peft.name != "none":
        return ["ref=sft_adapter", f"ref.adapter_path={model_dir}"]
    # The saved folder replaces whatever the model config builds its weights from (a GGUF, a random init).
    builders = [f"model.{key}=null" for key in ("init_config", "gguf_package", "gguf_file") if key in cfg.model]
    return [f"model.path={model_dir}", *builders]


def compose_stage(overrides: list[str]) -> DictConfig:
    """conf/train.yaml with the stage's overrides, composed as the launcher composes the run's own config."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a Hydra job
        return compose(config_name="train", overrides=overrides)
    from prefopt.config import compose_config

    return compose_config(*overrides)


def _require_completed(previous: Path, name: str) -> None:
    status = read_status(previous)
    if status != "completed":
        raise RecipeError(
            f"stage {previous.name} did not complete ({status or f'no {METRICS_FILE}'}; see its log), so stage "
            f"{name} was not started. Its checkpoints, if any, resume with train.resume=auto."
        )


def _task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
