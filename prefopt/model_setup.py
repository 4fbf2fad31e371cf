"""One answer to "which models does this run hold, in what form": policy (and its model class), reference,
adapters, quantization, precision and process count, resolved once from the composed config and the recipe.

Loading (prefopt.adapters), the memory estimate (prefopt.memory), validation, evaluation and the TRL arguments
(prefopt.trl_args) all read the ModelSetup; none of them looks at cfg.ref, cfg.peft or the device again to decide.
Resolving loads nothing and reaches no Hub, so `dry_run=true` and validation can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from omegaconf import DictConfig

from prefopt.distributed import world_size
from prefopt.models import pick_precision
from prefopt.recipe import Recipe

# What the policy is measured against while training.
Reference = Literal["none", "adapter_disabled", "copy", "model", "sft_adapter", "precomputed"]
REFERENCE_WHY = {
    "none": "none ({method} has no reference model)",
    "adapter_disabled": "none (the base with the adapter disabled)",
    "copy": "a frozen copy of the policy",
    "model": "ref.path={ref_path}",
    "sft_adapter": "a frozen copy of the SFT adapter",
    "precomputed": "none (log-probs computed before training)",
}


@dataclass(frozen=True)
class ModelSetup:
    """The models of one run.

    reference:
      none              the method trains without one (ORPO, SimPO, CPO, SFT, a reward model);
      adapter_disabled  LoRA/QLoRA in one process: the base with the adapter switched off, no second model;
      copy              a frozen second copy of the starting weights (peft=none, or several processes, where TRL's
                        adapter switching toggles requires_grad on the trained adapter and silently stops DDP's
                        gradient sync);
      model             another model, from ref.path;
      sft_adapter       policy and reference start from an SFT adapter; TRL keeps a frozen 'ref' copy of it inside
                        the policy (in several processes a separate model with the adapter merged in);
      precomputed       reference log-probs computed once before training; no reference model while training.
    """

    method: str
    model_class: str  # causal_lm (a policy) or sequence_classification (a reward model): Recipe.model_class
    precision: str  # fp32, bf16, fp16: by device unless set
    use_cpu: bool
    peft: str  # none, lora, qlora
    quantized: bool  # 4-bit base weights (QLoRA)
    processes: int
    reference: Reference
    ref_path: str | None = None
    sft_adapter_path: str | None = None

    @property
    def trains_adapter(self) -> bool:
        return self.peft != "none"

    @property
    def loads_reference_model(self) -> bool:
        """The launcher loads a second model and hands it to TRL as ref_model."""
        return self.reference in ("copy", "model") or (self.reference == "sft_adapter" and self.processes > 1)

    @property
    def reference_memory(self) -> tuple[str, str]:
        """(what the reference costs while training: none, copy or adapter; why), for the memory estimate."""
        why = REFERENCE_WHY[self.reference].format(method=self.method, ref_path=self.ref_path)
        if self.reference == "copy" and self.processes > 1 and self.trains_adapter:
            return "copy", "a frozen copy (several processes)"
        if self.reference == "model":
            return "copy", "ref=model, assumed the policy's size"
        if self.reference == "sft_adapter":
            return "adapter", why
        return ("copy" if self.reference == "copy" else "none"), why


def resolve_model_setup(cfg: DictConfig, recipe: Recipe) -> ModelSetup:
    """The ModelSetup of the composed config (`ref:`, `peft:`, `precision:`) for `recipe` on this machine."""
    ref = cfg.get("ref")
    choice = ref.name if ref is not None else "base"
    peft = cfg.peft.name
    processes = world_size()
    if not recipe.uses_reference:
        reference = "none"
    elif choice in ("model", "sft_adapter", "precomputed"):
        reference = choice
    elif peft == "none" or processes > 1:
        reference = "copy"
    else:
        reference = "adapter_disabled"
    return ModelSetup(
        method=cfg.method.name,
        model_class=recipe.model_class,
        precision=pick_precision(cfg.precision),
        use_cpu=not torch.cuda.is_available(),
        peft=peft,
        quantized=bool(cfg.peft.get("load_in_4bit", False)),
        processes=processes,
        reference=reference,
        ref_path=ref.get("path") if reference == "model" else None,
        sft_adapter_path=ref.get("adapter_path") if reference == "sft_adapter" else None,
    )
