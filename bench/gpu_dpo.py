"""GPU benchmark: LoRA and QLoRA DPO, ORPO and KTO on a random Llama-3-8B-shaped model, the recipe against plain TRL.

Run on a GPU machine: `python bench/gpu_dpo.py --variants lora,qlora --steps 8` (bench/gpu.sh wraps it; no
downloads); `--methods dpo,orpo,kto` adds ORPO's and KTO's rows beside DPO's; `--shape tiny` checks the script on a
CPU in seconds. For each method and variant, in one process, on the same pairs (KTO: each pair as its two unpaired
rows, 8 rows per step):
  plain   TRL's trainer with its config's defaults (activation checkpointing on), 4 pairs per step
  recipe  the method's recipe trainer on the composed config: shared-prompt rows, and micro-batch, accumulation and
          checkpointing picked by a memory preset (`--lora-budget-gib`, `--qlora-budget-gib`), 4 pairs per step
  plain+LEVER[+LEVER]  plain TRL with one lever (or several) of LEVERS, to measure each on its own:
          `--rows plain,plain+no_ckpt,plain+share_prompt,recipe`; recipe+LEVER adds one the recipe lacks (RECIPE_LEVERS)
Prints s/step, tokens/s, peak GPU memory and MFU; `--json` prints one object, `--out FILE` appends each row as a
JSON line as soon as it ends (a run cut short keeps its finished rows). A row that fails (out of memory, a kernel
not installed) prints its error and the next row runs. tokens/s counts the tokens of the pairs (2 x prompt+answer
per pair) in every row, whatever a row computes. MFU counts FLOPS_PER_TOKEN[method] * N FLOPs per such token: 6N
for the policy's forward+backward, 2N per forward without gradient (DPO: the reference; KTO: the reference, and the
KL rows through policy and reference) (N = parameters; LoRA skips most weight gradients, so this overstates the
work and is comparable across rows). setup_s is the trainer's construction: with ref_precomputed it includes the
reference pass over the whole dataset, which the step times leave out.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import torch
import yaml
from datasets import Dataset
from omegaconf import OmegaConf, open_dict
from transformers import TrainerCallback
from transformers.modeling_layers import GradientCheckpointingLayer
from trl import DPOTrainer, KTOTrainer

from prefopt.adapters import lora_config, quantization_config
from prefopt.models import char_tokenizer, load_model
from prefopt.recipe import load_recipe
from prefopt.run import Models, build_trainer, plan_run
from prefopt.trainers import FastDPOTrainer, FastKTOTrainer
from prefopt.trl_args import TRLS_OWN_LOSS

REPO = Path(__file__).resolve().parents[1]

LLAMA3_8B = dict(
    model_type="llama",
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=8192,
    rope_theta=500000.0,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=2,
)
LLAMA3_8B_PARAMS = 8.03e9
# --shape tiny checks the script itself on a CPU in seconds.
TINY = {
    **LLAMA3_8B,
    "vocab_size": 128,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100/H200 SXM


def trainer_classes(method: str) -> tuple[type, type]:
    """(TRL's trainer, the recipe's trainer) of a method; ORPO's come from trl.experimental, imported when used."""
    if method == "orpo":
        from trl.experimental.orpo import ORPOTrainer

        from prefopt.trainers_experimental import FastORPOTrainer

        return ORPOTrainer, FastORPOTrainer
    return {"dpo": (DPOTrainer, FastDPOTrainer), "kto": (KTOTrainer, FastKTOTrainer)}[method]


METHODS = ("dpo", "orpo", "kto")
# Per token of the pairs, in units of N (parameters): 6 for the policy's forward+backward, 2 per forward without
# gradient (DPO: the reference; KTO: the reference, and its KL rows through policy and reference).
FLOPS_PER_TOKEN = {"dpo": 8, "orpo": 6, "kto": 12}
REFERENCE_METHODS = ("dpo", "kto")  # the methods with a reference: the ref_precomputed lever applies to them

# One change each to plain TRL, as fields of the method's TRL config for a number of pairs per step. Two need more
# than a field: share_prompt swaps TRL's trainer for the recipe's (FastDPOTrainer, ...) with shared-prompt rows (on
# a CPU, also the recipe's LM head); ckpt_half keeps checkpointing on every other decoder layer only
# (SelectiveCheckpointing).
LEVERS = {
    "no_ckpt": lambda pairs: {"gradient_checkpointing": False},
    "ckpt_half": lambda pairs: {"gradient_checkpointing": True},
    "micro1": lambda pairs: {"per_device_train_batch_size": 1, "gradient_accumulation_steps": pairs},
    "share_prompt": lambda pairs: {},
    "ref_precomputed": lambda pairs: {"precompute_ref_log_probs": True},
    "liger": lambda pairs: {"use_liger_kernel": True},  # needs liger-kernel and Triton (GPU)
    "compile": lambda pairs: {"torch_compile": True},
}
TRL_SWITCHES = ("precompute_ref_log_probs", "use_liger_kernel", "torch_compile")  # reported as each row trained
# The levers the recipe does not use yet, as its config overrides: `recipe+ref_precomputed` and the like.
RECIPE_LEVERS = {
    "ref_precomputed": ["ref=precomputed"],
    "liger": ["+train.use_liger_kernel=true"],
    "compile": ["+train.torch_compile=true"],
}


def decoder_layers(model) -> list[GradientCheckpointingLayer]:
    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


class SelectiveCheckpointing(TrainerCallback):
    """Activation checkpointing on every other decoder layer: about half the recomputation for half the memory
    saved. The Trainer turns it on for every layer when training begins; this runs right after."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        for layer in decoder_layers(model)[1::2]:
            layer.gradient_checkpointing = False


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step, all its micro-batches included: from one step's end to the next's. Also
    counts the decoder layers that train with activation checkpointing."""

    def __init__(self):
        self.times = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        layers = decoder_layers(model)
        self.checkpointed_layers = f"{sum(layer.gradient_checkpointing for layer in layers)}/{len(layers)}"
        _sync()
        self._last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        _sync()
        now = time.perf_counter()
        self.times.append(now - self._last)
        self._last = now


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def examples_per_step(method: str, pairs_per_step: int) -> int:
    """KTO trains on each pair as two unpaired rows: twice the rows per step for the same pairs."""
    return 2 * pairs_per_step if method == "kto" else pairs_per_step


def pairs(n: int, prompt_len: int, answer_len: int) -> Dataset:
    # Character-level tokenizer: one character is one token, so lengths are exact.
    letters = "abcdefghijklmnopqrstuvwxyz"
    rows = [
        {"prompt": (letters[i % 26] * prompt_len), "chosen": "y" * (answer_len - 1), "rejected": "n" * (answer_len - 1)}
        for i in range(n)
    ]
    return Dataset.from_list(rows)


_saved_models: dict[str, Path] = {}  # the random weights each qlora row quantizes, saved once per process


def load_random_model(variant: str, shape: dict, precision: str):
    """The random-init model, quantized to nf4 for qlora (bitsandbytes quantizes while loading: save, load back)."""
    cuda = torch.cuda.is_available()
    peft_cfg = OmegaConf.create(yaml.safe_load((REPO / "conf" / "peft" / f"{variant}.yaml").read_text()))
    quantization = quantization_config(peft_cfg, precision)
    key = json.dumps(shape, sort_keys=True)
    folder = _saved_models.get(key)
    if quantization is None or folder is None:
        with torch.device("cuda" if cuda else "cpu"):  # random init on the GPU takes seconds, on the CPU minutes
            model = load_model(OmegaConf.create({"name": "llama3-8b-shape", "init_config": shape}), precision)
        if quantization is None:
            return model, peft_cfg
        folder = Path(f"/tmp/bench-random-model-{len(_saved_models)}")
        model.save_pretrained(folder)
        _saved_models[key] = folder
        del model
        _free_memory()
    model = load_model(OmegaConf.create({"name": "saved", "path": str(folder)}), precision, quantization)
    return model, peft_cfg


def _free_memory() -> None:
    gc.collect()  # trainers hold their model in reference cycles
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def plain_trainer(method, variant, shape, precision, train, pairs_per_step, max_length, timer, levers=()):
    model, peft_cfg = load_random_model(variant, shape, precision)
    batch = examples_per_step(method, pairs_per_step)
    settings = dict(per_device_train_batch_size=batch, gradient_accumulation_steps=1)
    for lever in levers:
        settings.update(LEVERS[lever](batch))
    args = load_recipe(f"recipes.{method}").config_class(
        output_dir="/tmp/bench-out",
        max_steps=len(train) // pairs_per_step,
        learning_rate=1e-5,
        bf16=precision == "bf16",
        logging_steps=1000,
        save_strategy="no",
        report_to=[],
        max_length=max_length,
        dataloader_num_workers=0,
        disable_tqdm=True,
        **settings,
    )
    callbacks = ([SelectiveCheckpointing()] if "ckpt_half" in levers else []) + [timer]  # timer last: it counts
    trainer_kwargs = dict(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=char_tokenizer(),
        peft_config=lora_config(peft_cfg),
        callbacks=callbacks,
    )
    trl_class, fast_class = trainer_classes(method)
    if "share_prompt" in levers:
        trainer = fast_class(**trainer_kwargs, share_prompt=True)
    else:
        trainer = trl_class(**trainer_kwargs)
    return trainer, {
        "micro_batch": args.per_device_train_batch_size,
        "accumulation": args.gradient_accumulation_steps,
        "share_prompt": getattr(trainer, "share_prompt", False),
    }


def recipe_trainer(method, variant, shape, precision, train, pairs_per_step, max_length, timer, budget_gib, levers=()):
    from prefopt.config import compose_config

    steps = len(train) // pairs_per_step
    cfg = compose_config(
        f"method={method}",
        "model=llama3-8b",
        f"peft={variant}",
        "logger=none",
        *TRLS_OWN_LOSS[method],  # the loss plain TRL's trainer computes, without the recipe's SFT terms
        "hardware=80gb",
        f"hardware.memory_gib={budget_gib}",
        "hardware.headroom_gib=0",
        f"train.per_device_train_batch_size={examples_per_step(method, pairs_per_step)}",
        f"train.max_length={max_length}",
        f"train.max_steps={steps}",
        "train.learning_rate=1e-5",
        "train.save_strategy=no",
        "train.logging_steps=1000",
        "train.lr_scheduler_type=linear",
        "train.warmup_steps=0",  # TRL's schedule: every row trains the same steps
        "+train.disable_tqdm=true",
        f"precision={precision}",
        *(o for lever in levers for o in RECIPE_LEVERS[lever]),
        output_dir="/tmp/bench-out",
    )
    with open_dict(cfg):
        cfg.model.shape = {k: shape[k] for k in cfg.model.shape}  # --shape tiny: the estimate of the tiny shape
    plan = plan_run(cfg)  # the launcher's seam: the hardware preset applied, every config rule checked
    model, _ = load_random_model(variant, shape, precision)
    trainer = build_trainer(
        cfg, plan, Models(model, None, lora_config(cfg.peft)), char_tokenizer(), train, None, [timer]
    )
    return trainer, {
        "micro_batch": cfg.train.per_device_train_batch_size,
        "accumulation": cfg.train.gradient_accumulation_steps,
        "share_prompt": trainer.share_prompt,
    }


def check_rows(rows: list[str], methods: tuple[str, ...] = ("dpo",)) -> None:
    """Fail before any model loads on a row or method name the script does not know."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown method '{unknown[0]}'. Methods: {', '.join(METHODS)}.")
    for row in rows:
        base, *levers = row.split("+")
        known = {"plain": LEVERS, "recipe": RECIPE_LEVERS}.get(base)
        if known is None or any(lever not in known for lever in levers):
            raise SystemExit(
                f"--rows: unknown row '{row}'. Rows: plain, recipe, plain+LEVER[+LEVER...] with LEVER one "
                f"of {', '.join(LEVERS)}; recipe+LEVER with one of {', '.join(RECIPE_LEVERS)}."
            )
        without_reference = [m for m in methods if m not in REFERENCE_METHODS]
        if "ref_precomputed" in levers and without_reference:
            raise SystemExit(
                f"--rows: '{row}' precomputes reference log-probs, and {', '.join(without_reference)} trains "
                f"without a reference; run it with --methods {','.join(REFERENCE_METHODS)}."
            )


def run(
    row: str,
    variant: str,
    steps: int,
    pairs_per_step: int,
    prompt_len: int,
    answer_len: int,
    shape: dict,
    budget_gib: float,
    method: str = "dpo",
) -> dict:
    """One row, timed; its error instead when it fails (out of memory, a kernel not installed), so others still run."""
    try:
        return _run(method, row, variant, steps, pairs_per_step, prompt_len, answer_len, shape, budget_gib)
    except Exception as error:  # any failure of one row is reported, and the next row runs
        return {"method": method, "row": row, "variant": variant, "error": f"{type(error).__name__}: {error}"[:500]}
    finally:
        _free_memory()


def _run(method, row, variant, steps, pairs_per_step, prompt_len, answer_len, shape, budget_gib) -> dict:
    cuda = torch.cuda.is_available()
    precision = "bf16" if cuda else "fp32"
    train = pairs(pairs_per_step * steps, prompt_len, answer_len)
    max_length = prompt_len + answer_len + 8
    timer = StepTimer()
    start_gib = torch.cuda.memory_allocated() / 2**30 if cuda else None  # what earlier rows left behind: ~0
    setup_start = time.perf_counter()
    base, *levers = row.split("+")
    if base == "plain":
        trainer, settings = plain_trainer(
            method, variant, shape, precision, train, pairs_per_step, max_length, timer, levers
        )
    else:
        trainer, settings = recipe_trainer(
            method, variant, shape, precision, train, pairs_per_step, max_length, timer, budget_gib, levers
        )
    setup_s = time.perf_counter() - setup_start
    model = trainer.model
    weights_gib = model.get_memory_footprint() / 2**30
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    train_loss = trainer.train().training_loss
    timed = timer.times[2:]  # the first steps compile kernels and warm the allocator
    tokens_per_step = pairs_per_step * 2 * (prompt_len + answer_len)
    seconds = sum(timed) / len(timed)
    result = {
        "method": method,
        "row": row,
        "variant": variant,
        **settings,
        "checkpointed_layers": timer.checkpointed_layers,
        "trl_switches": [field for field in TRL_SWITCHES if getattr(trainer.args, field, False)],
        "weights_gib": round(weights_gib, 1),
        "linear_4bit_layers": sum(type(m).__name__ == "Linear4bit" for m in model.modules()),
        "setup_s": round(setup_s, 1),
        "s_per_step": round(seconds, 3),
        "tokens_per_s": round(tokens_per_step / seconds),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None,
        "train_loss": round(train_loss, 6),  # the same in every row: levers change the speed, not the training
        "start_gib": round(start_gib, 1) if cuda else None,
        "mfu": round(FLOPS_PER_TOKEN[method] * LLAMA3_8B_PARAMS * tokens_per_step / seconds / H100_BF16_PEAK, 3),
    }
    trainer.accelerator.free_memory()  # accelerate keeps the prepared model and optimizer
    return result


def format_row(r: dict) -> str:
    if "error" in r:
        return f"{r['method']:5} {r['row']:24} {r['variant']:6} failed: {r['error']}"
    peak = f"{r['peak_gib']:9.1f}" if r["peak_gib"] is not None else f"{'-':>9}"
    return (
        f"{r['method']:5} {r['row']:24} {r['variant']:6} {r['micro_batch']:>5} x {r['accumulation']:<3} "
        f"{r['checkpointed_layers']:>5} {str(r['share_prompt']):6} {r['setup_s']:7.1f} {r['s_per_step']:7.3f} "
        f"{r['tokens_per_s']:9d} {r['weights_gib']:11.1f} {peak} {r['mfu']:6.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="dpo", help=f"among {', '.join(METHODS)}")
    parser.add_argument("--variants", default="lora,qlora")
    parser.add_argument(
        "--rows", default="plain,recipe", help=f"plain, recipe, plain+LEVER; levers: {', '.join(LEVERS)}"
    )
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--answer-len", type=int, default=512)
    parser.add_argument("--lora-budget-gib", type=float, default=40, help="the recipe's memory preset for LoRA")
    parser.add_argument("--qlora-budget-gib", type=float, default=10, help="the recipe's memory preset for QLoRA")
    parser.add_argument("--shape", choices=["llama3-8b", "tiny"], default="llama3-8b")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end instead of the table")
    parser.add_argument("--out", type=Path, help="append each row to this file as a JSON line when it ends")
    args = parser.parse_args()
    rows, variants, methods = args.rows.split(","), args.variants.split(","), tuple(args.methods.split(","))
    check_rows(rows, methods)
    shape = LLAMA3_8B if args.shape == "llama3-8b" else TINY
    budgets = {"lora": args.lora_budget_gib, "qlora": args.qlora_budget_gib}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    if not args.json:
        print(
            f"device: {device}; shape {args.shape}; {args.pairs} pairs x 2 x {args.prompt_len + args.answer_len} "
            f"tokens/step\n{'method':5} {'row':24} {'variant':6} {'micro x acc':>11} {'ckpt':5} {'shared':6} {'setup s':>7} "
            f"{'s/step':>7} {'tokens/s':>9} {'weights GiB':>11} {'peak GiB':>9} {'MFU':>6}",
            flush=True,
        )
    results = []
    for method in methods:
        for variant in variants:
            for row in rows:
                result = run(
                    row,
                    variant,
                    args.steps,
                    args.pairs,
                    args.prompt_len,
                    args.answer_len,
                    shape,
                    budgets[variant],
                    method,
                )
                results.append(result)
                if args.out:
                    with args.out.open("a") as out:
                        out.write(json.dumps({"device": device, "shape": args.shape, **result}) + "\n")
                if not args.json:
                    print(format_row(result), flush=True)
    if args.json:
        print(json.dumps({"device": device, "shape": args.shape, "results": results}))
        return
    timed = {(r["method"], r["row"], r["variant"]): r["tokens_per_s"] for r in results if "error" not in r}
    for (method, row, variant), tokens_per_s in timed.items():
        plain = timed.get((method, "plain", variant))
        if row != "plain" and plain:
            print(f"{method} {variant}: {row} / plain TRL = {tokens_per_s / plain:.2f}x tokens/s")


if __name__ == "__main__":
    main()
