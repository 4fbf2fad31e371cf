"""The exceptions users see: a clear message that says what is wrong and what to do."""


class RecipeError(Exception):
    """Bad input or environment, reported by the launcher as a short message instead of a traceback."""

    exit_code = 2


class RunInterrupted(RecipeError):
    """Training stopped before its end and can be resumed from its last complete checkpoint: on request (SIGTERM,
    Ctrl-C) after saving one, or because the next one could not be saved (CheckpointSaveFailed)."""

    exit_code = 143  # what a shell reports for a process ended by SIGTERM (130 for SIGINT: 128 + the signal)

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class CheckpointSaveFailed(RunInterrupted):
    """The disk filled up while a checkpoint was being written; the previous complete checkpoint is kept."""

    exit_code = 2
