"""The one exception type users see: a clear message that says what is wrong and what to do."""


class RecipeError(Exception):
    """Bad input or environment, reported by the launcher as a short message instead of a traceback."""
