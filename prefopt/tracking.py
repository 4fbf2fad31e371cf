"""Weights & Biases set-up: online with an API key, offline into the run directory without one or when W&B fails.

W&B never ends a run: a server that does not answer within `logger.init_timeout_s`, or a key it rejects, falls back
to offline logging (one warning says why and the `wandb sync` command); a W&B error during training is logged once
and training goes on without it.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from prefopt.distributed import is_main_process

log = logging.getLogger(__name__)
DEFAULT_INIT_TIMEOUT_S = 30.0


def wandb_mode() -> str:
    """online when a key is configured, else offline (no network needed; `wandb sync <run dir>/wandb/...` later)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def _why(exc: Exception, timeout_s: float) -> str:
    import wandb

    if isinstance(exc, wandb.errors.AuthenticationError):
        return f"W&B rejected the API key in WANDB_API_KEY ({exc}); check or unset WANDB_API_KEY"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"W&B could not start online within {timeout_s:g} s (logger.init_timeout_s): {first_line}"


def start_wandb(cfg: DictConfig, run_dir: Path, name: str):
    """Open the W&B run before the trainer does, so it carries the resolved config, group and name.

    transformers' WandbCallback reuses an open run and adds TRL's metrics and arguments to it; guard_trainer_logging()
    makes its errors non-fatal. Returns the run, which is offline or disabled when W&B could not start online.
    """
    if cfg.logger.name != "wandb" or not is_main_process():
        return None
    import wandb

    from prefopt.console import route_wandb_terminal

    route_wandb_terminal()  # W&B's banner, retries and summary: train.log (and the console with verbose=true)
    guard_trainer_logging()
    timeout_s = float(cfg.logger.get("init_timeout_s") or DEFAULT_INIT_TIMEOUT_S)
    kwargs = dict(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.logger.group,
        tags=list(cfg.logger.tags),
        name=name,
        dir=str(run_dir),
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    tolerate_wandb_errors.failed = False  # a new run (the next job of a multirun) logs again

    def open_run(mode: str, **extra):
        # quiet online: no "logged in as" look-up, which waits on the server outside init_timeout (it also drops
        # W&B's closing summary, which the run's page shows). Offline runs keep that summary for train.log.
        settings = wandb.Settings(init_timeout=timeout_s, quiet=mode == "online")
        run = wandb.init(mode=mode, settings=settings, **kwargs, **extra)
        _guard_module_calls(wandb)
        return run

    mode = wandb_mode()
    try:
        return open_run(mode)
    except Exception as exc:  # CommError (no server, timeout), AuthenticationError, UsageError, OSError
        if mode == "offline":
            reason = f"W&B could not log offline ({type(exc).__name__}: {exc})"
        else:
            reason = _why(exc, timeout_s)
            try:
                run = open_run("offline", reinit="finish_previous")
            except Exception as offline_exc:
                reason += f"; offline logging failed too ({type(offline_exc).__name__}: {offline_exc})"
            else:
                sync_dir = Path(run.settings.sync_dir)
                log.warning(
                    "%s. Logging offline into %s instead; upload it later with `wandb sync %s`.",
                    reason,
                    sync_dir,
                    sync_dir,
                )
                return run
    log.warning("%s. This run logs to train.log and metrics.json only.", reason)
    # A disabled run keeps transformers' WandbCallback from calling wandb.init (and waiting on the server) again.
    return open_run("disabled", reinit="finish_previous")


def finish_wandb(exit_code: int = 0) -> None:
    """Close the run even when training failed, so the next job of a multirun starts a fresh one.

    A failure to close (its process gone, its directory unwritable) is logged: the run's own files are already written.
    """
    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return
    try:
        wandb.finish(exit_code=exit_code)
    except Exception as exc:
        log.warning("W&B could not close its run (%s: %s); the run's own files are complete.", type(exc).__name__, exc)


class tolerate_wandb_errors:  # noqa: N801 (used as a context manager and a decorator)
    """Log the first W&B failure (wandb.log raising, its process gone, its directory unwritable) and go on.

    Once one call failed, later ones are skipped silently: a logger that broke mid-run rarely recovers.
    """

    failed = False

    def __init__(self, where: str):
        self.where = where

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        if not tolerate_wandb_errors.failed:
            tolerate_wandb_errors.failed = True
            log.warning(
                "W&B logging failed in %s (%s: %s); training goes on without W&B: metrics still go to train.log "
                "and metrics.json.",
                self.where,
                type(exc).__name__,
                exc,
            )
        return True

    def __call__(self, fn):
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            if tolerate_wandb_errors.failed:
                return None
            with self:
                return fn(*args, **kwargs)
            return None

        guarded._prefopt_guarded = True
        return guarded


def _guard_module_calls(wandb) -> None:
    """wandb.log and wandb.alert (what the trainer's callback, the health monitor and the evaluation call), guarded.

    wandb.init binds them to the new run, so this runs after each init.
    """
    from prefopt.compat.wandb import wrap_module_calls

    wrap_module_calls(wandb, lambda name, fn: tolerate_wandb_errors(f"wandb.{name}")(fn))


def _guarded_wandb_callback(WandbCallback):  # noqa: N803 (a class)
    events = {k: v for k, v in vars(WandbCallback).items() if callable(v) and (k == "setup" or k.startswith("on_"))}

    def wrap(name, method):
        guard = tolerate_wandb_errors(f"transformers' WandbCallback.{name}")

        @functools.wraps(method)
        def guarded(self, *args, **kwargs):
            return guard(method)(self, *args, **kwargs)

        return guarded

    body = {name: wrap(name, method) for name, method in events.items()}
    body["__doc__"] = "transformers' WandbCallback whose errors are logged once instead of ending training."
    return type("GuardedWandbCallback", (WandbCallback,), body)


def guard_trainer_logging() -> None:
    """Have `report_to=["wandb"]` build the guarded callback."""
    from prefopt.compat.transformers import use_integration_callback

    use_integration_callback("wandb", _guarded_wandb_callback)
