"""wandb internals: where its terminal output goes, and its module-level log/alert functions."""

from __future__ import annotations

import logging

from prefopt.compat import Reliance

RELIANCES = [
    Reliance(
        "wandb",
        "wandb.errors.term.termsetup",
        "wrapped",
        "prefopt.console.route_wandb_terminal",
        "wandb re-runs termsetup on every wandb.setup(); the wrapper keeps its lines on a logger (train.log), "
        "not stderr, and keeps wandb from prompting for a key",
    ),
    Reliance(
        "wandb",
        "wandb.errors.term._silent",
        "replaced",
        "prefopt.console.route_wandb_terminal",
        "silent mode sends wandb's terminal lines to term._logger",
    ),
    Reliance("wandb", "wandb.errors.term._logger", "replaced", "prefopt.console.route_wandb_terminal", "as above"),
    Reliance(
        "wandb",
        "wandb.log",
        "replaced",
        "prefopt.tracking.start_wandb",
        "wandb.init rebinds wandb.log/alert to the new run; after each init they are wrapped so that a W&B failure "
        "is logged once and training goes on",
    ),
    Reliance("wandb", "wandb.alert", "replaced", "prefopt.tracking.start_wandb", "as wandb.log"),
]


def route_terminal(target: logging.Logger) -> None:
    """wandb's banner, retries and run summary go to `target` instead of stderr, also after later wandb.setup()s."""
    import wandb
    from wandb.errors import term

    if getattr(wandb.termsetup, "_prefopt", False):
        return
    original = term.termsetup

    def termsetup(settings, logger=None):
        original(settings, target)
        term._silent = True

    termsetup._prefopt = True
    wandb.termsetup = termsetup
    term._silent, term._logger = True, target


def wrap_module_calls(wandb_module, wrap) -> None:
    """wandb.log and wandb.alert replaced by wrap(fn), once per binding (wandb.init binds them anew)."""
    for name in ("log", "alert"):
        fn = getattr(wandb_module, name)
        if not getattr(fn, "_prefopt_guarded", False):
            setattr(wandb_module, name, wrap(name, fn))
