"""GPU benchmark: LoRA and QLoRA DPO steps on a random Llama-3-8B-shaped model, no downloads.

Run on a GPU machine: `python bench/gpu_dpo.py --variants lora,qlora --steps 8` (bench/gpu.sh wraps it).
Prints tokens/s, peak GPU memory and MFU per variant, side by side in one process; `--json` prints one object.
MFU counts 8*N FLOPs per trained token: 6N for the policy's forward+backward, 2N for the reference forward
(N = parameters; LoRA skips most weight gradients, so this overstates the work and is comparable across runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml
from datasets import Dataset
from omegaconf import OmegaConf
from transformers import TrainerCallback
from trl import DPOConfig, DPOTrainer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recipes.adapters import lora_config, quantization_config  # noqa: E402
from recipes.models import char_tokenizer, load_model  # noqa: E402

LLAMA3_8B = dict(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0,
                 tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=2)
LLAMA3_8B_PARAMS = 8.03e9
# --shape tiny checks the script itself on a CPU in seconds.
TINY = {**LLAMA3_8B, "vocab_size": 128, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2}
H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100/H200 SXM


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step, with the GPU drained at both ends."""

    def __init__(self):
        self.times = []

    def on_step_begin(self, args, state, control, **kwargs):
        _sync()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        _sync()
        self.times.append(time.perf_counter() - self._start)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def pairs(n: int, prompt_len: int, answer_len: int) -> Dataset:
    # Character-level tokenizer: one character is one token, so lengths are exact.
    letters = "abcdefghijklmnopqrstuvwxyz"
    rows = [{"prompt": (letters[i % 26] * prompt_len), "chosen": "y" * (answer_len - 1), "rejected": "n" * (answer_len - 1)}
            for i in range(n)]
    return Dataset.from_list(rows)


def run(variant: str, steps: int, pairs_per_step: int, prompt_len: int, answer_len: int, checkpointing: bool,
        shape: dict) -> dict:
    cuda = torch.cuda.is_available()
    precision = "bf16" if cuda else "fp32"
    peft_cfg = OmegaConf.create(yaml.safe_load((REPO / "conf" / "peft" / f"{variant}.yaml").read_text()))
    model_cfg = OmegaConf.create({"name": "llama3-8b-shape", "init_config": shape})
    if cuda:
        torch.cuda.empty_cache()
    quantization = quantization_config(peft_cfg, precision)
    with torch.device("cuda" if cuda else "cpu"):  # random init on the GPU takes seconds, on the CPU minutes
        model = load_model(model_cfg, precision)
    if quantization is not None:
        # bitsandbytes quantizes while loading weights: save the random model, load it back in 4-bit.
        folder = Path("/tmp/bench-random-model")
        model.save_pretrained(folder)
        del model
        torch.cuda.empty_cache() if cuda else None
        model = load_model(OmegaConf.create({"name": "saved", "path": str(folder)}), precision, quantization)
    weights_gib = model.get_memory_footprint() / 2**30
    linear_4bit = sum(type(m).__name__ == "Linear4bit" for m in model.modules())
    args = DPOConfig(output_dir="/tmp/bench-out", per_device_train_batch_size=pairs_per_step, max_steps=steps,
                     learning_rate=1e-5, bf16=cuda, logging_steps=1000, save_strategy="no", report_to=[],
                     max_length=prompt_len + answer_len + 8, activation_checkpointing=checkpointing,
                     dataloader_num_workers=0, disable_tqdm=True)
    timer = StepTimer()
    trainer = DPOTrainer(model=model, args=args, train_dataset=pairs(pairs_per_step * steps, prompt_len, answer_len),
                         processing_class=char_tokenizer(), peft_config=lora_config(peft_cfg), callbacks=[timer])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    timed = timer.times[2:]  # the first steps compile kernels and warm the allocator
    tokens_per_step = pairs_per_step * 2 * (prompt_len + answer_len)
    seconds = sum(timed) / len(timed)
    result = {
        "variant": variant, "activation_checkpointing": checkpointing, "weights_gib": round(weights_gib, 1),
        "linear_4bit_layers": linear_4bit, "s_per_step": round(seconds, 3),
        "tokens_per_s": round(tokens_per_step / seconds), "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None,
        "mfu": round(8 * LLAMA3_8B_PARAMS * tokens_per_step / seconds / H100_BF16_PEAK, 3),
    }
    del trainer, model
    if cuda:
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="lora,qlora")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--answer-len", type=int, default=512)
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--shape", choices=["llama3-8b", "tiny"], default="llama3-8b")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    shape = LLAMA3_8B if args.shape == "llama3-8b" else TINY
    results = [run(v, args.steps, args.pairs, args.prompt_len, args.answer_len, not args.no_checkpointing, shape)
               for v in args.variants.split(",")]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    if args.json:
        print(json.dumps({"device": device, "shape": args.shape, "results": results}))
        return
    print(f"device: {device}; shape {args.shape}; {args.pairs} pairs x 2 x {args.prompt_len + args.answer_len} tokens/step")
    print(f"{'variant':8} {'ckpt':5} {'s/step':>7} {'tokens/s':>9} {'weights GiB':>11} {'peak GiB':>9} {'MFU':>6}")
    for r in results:
        peak = f"{r['peak_gib']:9.1f}" if r["peak_gib"] is not None else f"{'-':>9}"
        print(f"{r['variant']:8} {str(r['activation_checkpointing']):5} {r['s_per_step']:7.3f} {r['tokens_per_s']:9d} "
              f"{r['weights_gib']:11.1f} {peak} {r['mfu']:6.3f}")
    if len(results) > 1:
        base = results[0]
        for r in results[1:]:
            memory = f", {r['peak_gib'] / base['peak_gib']:.2f}x memory" if base["peak_gib"] else ""
            print(f"{r['variant']} / {base['variant']}: {r['tokens_per_s'] / base['tokens_per_s']:.2f}x tokens/s{memory}")


if __name__ == "__main__":
    main()
