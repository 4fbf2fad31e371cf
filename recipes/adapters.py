"""LoRA and QLoRA settings from `conf/peft/*.yaml`, as peft and bitsandbytes objects."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig, OmegaConf

from recipes.models import TORCH_DTYPES

log = logging.getLogger(__name__)


def lora_config(peft_cfg: DictConfig):
    """A peft.LoraConfig, or None for full-parameter training (peft=none)."""
    if peft_cfg.name == "none":
        return None
    from peft import LoraConfig

    target = peft_cfg.target_modules
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=peft_cfg.r,
        lora_alpha=peft_cfg.lora_alpha,
        lora_dropout=peft_cfg.lora_dropout,
        target_modules=target if isinstance(target, str) else list(OmegaConf.to_container(target)),
    )


def quantization_config(peft_cfg: DictConfig, precision: str):
    """4-bit nf4 weights for QLoRA; matmuls run in the training precision (bf16 on GPU, fp32 on CPU)."""
    if not peft_cfg.get("load_in_4bit", False):
        return None
    from transformers import BitsAndBytesConfig

    if not torch.cuda.is_available():
        log.warning("peft=qlora on CPU: 4-bit weights save memory here but train slower than peft=lora")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=peft_cfg.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=peft_cfg.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=TORCH_DTYPES[precision],
    )
