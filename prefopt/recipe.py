"""Preference-optimization recipes on TRL: one short module per method, plus the shared building blocks."""

from __future__ import annotations

import importlib
from types import ModuleType

from prefopt.errors import RecipeError

RECIPE_API = ("DATA_FORMAT", "USES_REFERENCE", "build_config", "build_trainer")


def load_recipe(module_name: str) -> ModuleType:
    """Import the recipe module a method config names (`method.recipe`), e.g. recipes.dpo or recipes.my_dpo."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise RecipeError(
            f"method.recipe={module_name}: no such module ({exc}). Recipes live in recipes/<name>.py."
        ) from None
    missing = [name for name in RECIPE_API if not hasattr(module, name)]
    if missing:
        raise RecipeError(f"recipe module {module_name} lacks {', '.join(missing)} (see recipes/dpo.py for the shape).")
    return module
