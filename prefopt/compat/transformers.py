"""transformers internals: the Trainer's default progress callback and the report_to integration table."""

from __future__ import annotations

from prefopt.compat import Reliance

RELIANCES = [
    Reliance(
        "transformers",
        "transformers.trainer.DEFAULT_PROGRESS_CALLBACK",
        "replaced",
        "prefopt.console.setup",
        "the Trainer builds its progress bar from this module global; ours shows the loss and sends logged dicts to "
        "train.log",
    ),
    Reliance(
        "transformers",
        "transformers.integrations.integration_utils.INTEGRATION_TO_CALLBACK",
        "replaced",
        "prefopt.tracking.guard_trainer_logging",
        "report_to=['wandb'] builds its callback from this table; ours logs W&B errors once instead of ending training",
    ),
    Reliance(
        "transformers",
        "transformers.integrations.integration_utils.WandbCallback",
        "wrapped",
        "prefopt.tracking.guard_trainer_logging",
        "its setup and on_* methods are wrapped one by one (their names are read from the class)",
    ),
]


def use_progress_callback(callback_class: type) -> None:
    import transformers.trainer

    transformers.trainer.DEFAULT_PROGRESS_CALLBACK = callback_class


def use_integration_callback(integration: str, make_callback_class) -> None:
    """report_to=[integration] builds make_callback_class(current class) instead, once."""
    from transformers.integrations import integration_utils

    current = integration_utils.INTEGRATION_TO_CALLBACK.get(integration)
    if current is not None and not getattr(current, "_prefopt", False):
        replacement = make_callback_class(current)
        replacement._prefopt = True
        integration_utils.INTEGRATION_TO_CALLBACK[integration] = replacement
