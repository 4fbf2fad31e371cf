"""The exceptions users see: a clear message that says what is wrong and what to do."""


class RecipeError(Exception):
    """Bad input or environment, reported by the launcher as a short message instead of a traceback."""

    exit_code = 2


class RunInterrupted(RecipeError):
    """Training stopped on request (SIGTERM) after saving a checkpoint; the run can be resumed."""

    exit_code = 143  # what a shell reports for a process ended by SIGTERM
