"""Model instances whose forward is replaced: TRL's fused LM head, ours on CPU, and the shared-prompt backbone.

TRL's DPOTrainer/SFTTrainer replace `model.forward` of the policy (and reference) with their fused LM head
(trl.trainer.utils.add_fused_lm_head); prefopt.lm_head replaces that again on CPU, and prefopt.shared_prompt replaces
the backbone's forward. Each trainer does it to the models it is given, so a model handed to several trainers in turn
(online DPO's rounds) gets its forwards back before the next one (forwards_of).
"""

from __future__ import annotations

from collections.abc import Callable

from prefopt.compat import Reliance

RELIANCES = [
    Reliance(
        "trl",
        "trl.trainer.utils.add_fused_lm_head",
        "wrapped",
        "prefopt.lm_head.add_completion_lm_head",
        "TRL replaces model.forward with its fused head (labels=, fused_lm_head=True -> FusedCausalLMOutput); the "
        "CPU head replaces it with one of the same contract that projects completion tokens only",
    ),
    Reliance(
        "trl",
        "trl.trainer.utils.FusedCausalLMOutput",
        "read",
        "prefopt.lm_head",
        "what TRL's trainers read from the fused head: log_probs, label_mask and the metric fields",
    ),
    Reliance(
        "transformers",
        "transformers.modeling_utils.PreTrainedModel.base_model",
        "wrapped",
        "prefopt.shared_prompt.add_shared_prompt_backbone",
        "the backbone's forward takes a 4-D attention mask and position ids: shared-prompt rows pass them",
    ),
]


def replace_forward(module, forward) -> None:
    """module.forward = forward, on this instance only (its class is untouched)."""
    module.forward = forward


def forwards_of(*modules) -> Callable[[], None]:
    """A function that puts back the forwards `modules` have now, whatever trainers replace after this call."""
    absent = object()
    saved = [(m, m.__dict__.get("forward", absent)) for m in modules if m is not None]

    def restore() -> None:
        for module, forward in saved:
            if forward is absent:
                module.__dict__.pop("forward", None)
            else:
                module.forward = forward

    return restore
