"""LoRA and QLoRA settings from `conf/peft/*.yaml`, as peft and bitsandbytes objects, and the policy and
reference model that `conf/ref/*.yaml` asks for."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig, OmegaConf

from prefopt.errors import RecipeError
from prefopt.model_setup import ModelSetup
from prefopt.models import TORCH_DTYPES, check_available, load_model

log = logging.getLogger(__name__)


# peft's task type for each Recipe.model_class: SEQ_CLS also trains and saves the new score head in full.
LORA_TASK_TYPES = {"causal_lm": "CAUSAL_LM", "sequence_classification": "SEQ_CLS"}


def lora_config(peft_cfg: DictConfig, model_class: str = "causal_lm"):
    """A peft.LoraConfig, or None for full-parameter training (peft=none)."""
    if peft_cfg.name == "none":
        return None
    from peft import LoraConfig

    target = peft_cfg.target_modules
    return LoraConfig(
        task_type=LORA_TASK_TYPES[model_class],
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


def load_sft_adapter(model, adapter_path: str, trainable: bool = True):
    """`model` wrapped as a PeftModel with the PEFT adapter at `adapter_path` as its 'default' adapter."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_path), is_trainable=trainable)


def reference_model_config(cfg: DictConfig) -> DictConfig:
    """cfg.model with its weights from ref.path; tokenizer, attention and dtype settings stay the policy's."""
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    spec.update(name=f"reference ({cfg.ref.path})", path=cfg.ref.path, init_config=None)
    spec.update(gguf_package=None, gguf_file=None)
    return OmegaConf.create(spec)


def build_policy_and_reference(cfg: DictConfig, setup: ModelSetup, quant_config=None):
    """(policy, ref_model, peft_config) for the recipe's trainer, as `setup.reference` says; the policy is loaded
    as `setup.model_class` (a reward model trains without a reference).

    ref_model is None where TRL needs no second model: the base with the adapter disabled, a frozen 'ref' copy of
    the SFT adapter inside the policy, log-probs computed before training, or a method without a reference.
    """
    seed = cfg.train.seed
    if setup.reference == "model":
        check_available(reference_model_config(cfg))  # fail before the policy loads, not after
    model = load_model(cfg.model, setup.precision, quant_config, seed=seed, model_class=setup.model_class)
    if setup.reference == "sft_adapter":
        log.info("policy and reference start from the SFT adapter %s (its own r and targets)", setup.sft_adapter_path)
        model = load_sft_adapter(model, setup.sft_adapter_path)
        ref_model = None  # TRL copies the adapter into a frozen 'ref' adapter and switches to it
        if setup.loads_reference_model:  # TRL runs a separate reference only as a plain model: merge the adapter in
            base = load_model(cfg.model, setup.precision, quant_config, seed=seed)
            ref_model = load_sft_adapter(base, setup.sft_adapter_path, trainable=False).merge_and_unload()
            ref_model.requires_grad_(False)
        return model, ref_model, None  # no peft_config: TRL refuses one next to a PeftModel
    peft_config = lora_config(cfg.peft, setup.model_class)
    if setup.reference == "model":
        ref_model = load_model(reference_model_config(cfg), setup.precision, quant_config, seed=seed)
        _check_same_vocabulary(model, ref_model, setup.ref_path)
        return model, ref_model, peft_config
    if setup.reference == "copy":
        return model, load_model(cfg.model, setup.precision, quant_config, seed=seed), peft_config
    return model, None, peft_config


def _check_same_vocabulary(model, ref_model, ref_path: str) -> None:
    ours, theirs = (m.get_input_embeddings().num_embeddings for m in (model, ref_model))
    if ours != theirs:
        raise RecipeError(
            f"ref.path={ref_path} has a vocabulary of {theirs} tokens, the policy {ours}: the reference must use the "
            f"policy's tokenizer (pick a reference from the same model family)."
        )


def reference_for_evaluation(cfg: DictConfig, setup: ModelSetup, ref_model, device, quant_config=None):
    """What prefopt.evaluation measures the trained policy against: the trainer's reference model when there is
    one, else the base with the adapter disabled (None), else the starting weights loaded again.

    With ref=sft_adapter in one process the reference lives inside the policy as TRL's 'ref' adapter, which the
    evaluation cannot switch to (disabling adapters would measure against the bare base): base + SFT adapter are
    loaded again, frozen. Full fine-tuning without a reference model in memory (reference-free methods,
    ref=precomputed) loads the starting weights again; a finished run (`ref_model` None) loads ref=model's model.
    """
    if ref_model is not None:
        return ref_model
    if setup.reference == "model":
        reference = load_model(reference_model_config(cfg), setup.precision, quant_config, seed=cfg.train.seed)
        return reference if quant_config is not None else reference.to(device)
    if setup.reference == "sft_adapter":
        base = load_model(cfg.model, setup.precision, quant_config, seed=cfg.train.seed)
        if quant_config is None:  # 4-bit weights were loaded onto the GPU already
            base = base.to(device)
        return load_sft_adapter(base, setup.sft_adapter_path, trainable=False)
    if not setup.trains_adapter:
        return load_model(cfg.model, setup.precision, seed=cfg.train.seed).to(device)
    return None
