"""accelerate internals: the list of models an Accelerator prepared."""

from __future__ import annotations

from prefopt.compat import Reliance

RELIANCES = [
    Reliance(
        "accelerate",
        "accelerate.Accelerator._models",
        "read",
        "prefopt.distributed.undo_evaluation_preparation",
        "an evaluate() before train() prepares the policy without its DDP wrapper and marks it prepared; removing it "
        "from _models (and _is_accelerate_prepared) lets train() wrap it, so gradients sync across ranks",
        instance_attribute=True,
    ),
]


def forget_prepared_model(accelerator, model) -> bool:
    """Undo accelerator.prepare(model)'s bookkeeping for `model`; False when it was not prepared."""
    if not getattr(model, "_is_accelerate_prepared", False) or model not in accelerator._models:
        return False
    accelerator._models.remove(model)
    model._is_accelerate_prepared = False
    return True
