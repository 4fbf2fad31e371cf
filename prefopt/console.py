"""What a command prints: the project's own lines and one progress bar; third-party output goes to a log file.

`verbose=true` (`make train-dpo ARGS="verbose=true"`) shows everything on the console as well. Hydra's logging set-up
is conf/hydra/job_logging/prefopt.yaml: a console handler filtered by ConsoleFilter and the train.log file handler.
Commands without a Hydra run (make eval, make pairs, ...) call setup_tool. Import this module before the libraries
whose import logs (bitsandbytes does), so those lines reach the log file too.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import DictConfig

# Loggers whose INFO lines a person reads; everything else is third-party (transformers, datasets, wandb, ...).
OURS = ("train", "prefopt", "recipes", "scripts", "__main__")
_EARLY_LIMIT = 500


def is_ours(record: logging.LogRecord) -> bool:
    """True for the project's loggers. Python warnings are the libraries' (the project says what it has to say through
    logging), also where a library attributes one to the line of ours that called it (TRL's experimental-API import
    warning names the recipe that imports trl.experimental)."""
    return record.name != "py.warnings" and record.name.split(".")[0] in OURS


class ConsoleFilter(logging.Filter):
    """Passes the project's own records (unless marked `extra={"console": False}`); everything with verbose."""

    def __init__(self, verbose: bool = False):
        super().__init__()
        self.verbose = bool(verbose)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose:
            return True
        return is_ours(record) and getattr(record, "console", True)


class ConsoleFormatter(logging.Formatter):
    """The message alone for INFO; WARNING and above carry their level so they stand out."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname}: {message}"
        if not is_ours(record):  # verbose=true: say where a third-party line comes from
            return f"[{record.name}] {message}"
        return message


class _EarlyRecords(logging.Handler):
    """Holds what is logged before Hydra configures logging (imports), so setup() can replay it into train.log."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < _EARLY_LIMIT:
            self.records.append(record)


_early: _EarlyRecords | None = None
_tool_handlers: list[logging.Handler] = []
# Whether train.log held an earlier run's lines when this process started logging into it (dry_run keeps such a
# directory); what this process replays there from its imports does not count.
log_had_lines_before_this_run = False
if not logging.getLogger().handlers:
    # Without a handler Python prints these to stderr ("Failed to load CPU gemm_4bit_forward ..." at every start).
    _early = _EarlyRecords()
    logging.getLogger().addHandler(_early)


def setup(cfg: DictConfig) -> None:
    """Route third-party logging, warnings and progress bars: train.log always, the console only with verbose."""
    verbose = bool(cfg.get("verbose", False))
    root = logging.getLogger()
    global log_had_lines_before_this_run
    log_had_lines_before_this_run = any(
        isinstance(h, logging.FileHandler) and Path(h.baseFilename).is_file() and Path(h.baseFilename).stat().st_size
        for h in root.handlers
    )
    _replay_early_records(root)
    for handler in root.handlers:
        for found in handler.filters:
            if isinstance(found, ConsoleFilter):
                found.verbose = verbose  # the config's key wins over the job_logging default
    _route_libraries(verbose)
    if not verbose:
        from prefopt.compat.transformers import use_progress_callback

        use_progress_callback(TrainingBar)


def setup_tool(log_file: Path | None) -> None:
    """A command without a Hydra run: the project's warnings and errors on stderr (stdout stays the command's own
    output), everything at INFO and above appended to `log_file` (the libraries' lines go there only)."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in _tool_handlers:  # a second call in one process (tests) replaces the first one's handlers
        root.removeHandler(handler)
        handler.close()
    _tool_handlers.clear()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.addFilter(ConsoleFilter())
    console.setFormatter(ConsoleFormatter("%(message)s"))
    _tool_handlers.append(console)
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file = logging.FileHandler(log_file)
        file.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        _tool_handlers.append(file)
    for handler in _tool_handlers:
        root.addHandler(handler)
    _replay_early_records(root)
    _route_libraries(verbose=False)


def _replay_early_records(root: logging.Logger) -> None:
    global _early
    if _early is None:
        return
    root.removeHandler(_early)
    for record in _early.records:
        for handler in root.handlers:
            if record.levelno >= handler.level:
                handler.handle(record)
    _early = None


def _route_libraries(verbose: bool) -> None:
    logging.captureWarnings(True)  # FutureWarnings and UserWarnings of the libraries -> py.warnings -> train.log

    import datasets
    import transformers

    # Both libraries print through their own stderr handler and (transformers) never reach train.log otherwise.
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    datasets_root = logging.getLogger("datasets")
    for handler in list(datasets_root.handlers):
        if type(handler) is logging.StreamHandler:
            datasets_root.removeHandler(handler)
    datasets.utils.logging.enable_propagation()
    if not verbose:
        datasets.disable_progress_bars()  # flatten/map/filter bars of the data preparation


def _trainer_progress_callback():
    from transformers.trainer_callback import ProgressCallback

    return ProgressCallback


class TrainingBar(_trainer_progress_callback()):
    """The Trainer's training bar with the latest loss; no evaluation bars; the logged dicts go to train.log."""

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        pass

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if self.training_bar is not None and isinstance(logs.get("loss"), (int, float)):
            self.training_bar.set_postfix(loss=f"{logs['loss']:.4g}", refresh=False)
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in logs.items() if k != "total_flos"}
        logging.getLogger("prefopt.console").info("step %d: %s", state.global_step, shown, extra={"console": False})


def route_wandb_terminal() -> None:
    """W&B prints its banner, retries and run summary to stderr; send them to the `wandb_terminal` logger instead
    (train.log, and the console with verbose=true). It also keeps W&B from prompting for a key."""
    from prefopt.compat.wandb import route_terminal

    route_terminal(logging.getLogger("wandb_terminal"))


def log_run_summary(cfg: DictConfig, run_dir: Path) -> None:
    """The run in a few lines: what trains on what, against which reference, where the files go."""
    from prefopt.models import pick_precision

    log = logging.getLogger("prefopt.console")
    method = cfg.method.name + (f" (beta {cfg.method.beta})" if cfg.method.get("beta") is not None else "")
    log.info(
        "%s on %s, dataset %s, peft %s, ref %s",
        method,
        cfg.model.name,
        cfg.dataset.name,
        cfg.peft.name,
        cfg.ref.get("name", "-"),
    )
    log.info("precision %s, %s steps, logger %s", pick_precision(cfg.precision), cfg.train.max_steps, cfg.logger.name)
    quiet = "" if cfg.get("verbose", False) else " (library output there only; verbose=true shows it here)"
    log.info("run directory %s, log %s%s", run_dir, Path(run_dir) / "train.log", quiet)
