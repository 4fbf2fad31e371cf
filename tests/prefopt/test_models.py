import pytest
import torch

from prefopt.errors import RecipeError
from prefopt.models import char_tokenizer, check_available, load_model, load_tokenizer, pick_precision
from tests.conftest import compose_config


def test_precision_is_fp32_on_cpu_unless_asked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_precision("auto") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert pick_precision("auto") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert pick_precision("auto") == "fp16"
    assert pick_precision("fp32") == "fp32"


def test_char_tokenizer_round_trips_and_renders_chat():
    tok = char_tokenizer()
    text = "What is 12 + 7?\nReply."
    assert tok.decode(tok(text)["input_ids"]) == text
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert len(tok) < 128


def test_tiny_random_model_is_the_same_for_the_same_seed():
    cfg = compose_config("model=tiny-random").model
    a, b = load_model(cfg, "fp32", seed=1), load_model(cfg, "fp32", seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert a.config.vocab_size >= len(load_tokenizer(cfg))


def test_unreachable_hub_model_names_the_model_and_the_local_path_override():
    cfg = compose_config("model=llama3-8b").model
    with pytest.raises(RecipeError, match=r"llama3-8b.*meta-llama/Meta-Llama-3-8B.*model\.path=/path/to/weights"):
        check_available(cfg)


def test_missing_local_model_path_is_reported():
    cfg = compose_config("model=mistral-7b-instruct", "model.path=/nonexistent/weights").model
    with pytest.raises(RecipeError, match="model.path=/nonexistent/weights does not exist"):
        check_available(cfg)


def test_local_folder_in_hub_layout_loads(tmp_path):
    tiny = compose_config("model=tiny-random").model
    load_model(tiny, "fp32").save_pretrained(tmp_path)
    char_tokenizer().save_pretrained(tmp_path)
    cfg = compose_config("model=qwen2.5-0.5b-instruct", f"model.path={tmp_path}").model
    check_available(cfg)
    model = load_model(cfg, "fp32")
    assert model.config.hidden_size == 64
    assert load_tokenizer(cfg).chat_template is not None


def test_qlora_loads_the_base_in_4bit_nf4():
    import bitsandbytes as bnb

    from prefopt.adapters import quantization_config

    cfg = compose_config("model=tiny-random", "peft=qlora")
    model = load_model(cfg.model, "fp32", quantization_config(cfg.peft, "fp32"))
    linear4 = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linear4 and linear4[0].weight.quant_type == "nf4" and linear4[0].weight.quant_state.nested
