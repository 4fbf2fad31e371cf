"""CPU benchmark of a LoRA training step of one method: the recipe against plain TRL, on the same batches.

Run: `make bench method=kto` (the embedded SmolLM2, a few minutes on 2 cores; method= dpo, ipo, kto, orpo, cpo, simpo,
rm, sft) or `python bench/cpu_step.py --method orpo --model tiny-random --steps 2 --json` (seconds); `--ragged` (DPO)
adds the padding measurement. Rows, all in this one process on the composed default config of the method (model,
LoRA, built-in data, batch size, lr, max_length):
  recipe        what `make train-<method>` trains with: the recipe's trainer (prefopt.trainers), trainer.train()
  plain_trl     TRL's trainer with its config's defaults but bf16=False, the method's hyperparameters (beta,
                loss_type, ...) and the recipe's lr/batch/max_length/steps (so TRL's default activation
                checkpointing stays on)
  trl_config    TRL's trainer with the recipe's config as it is: what the recipe's trainer alone changes
  floor         DPO only: a hand-written step: policy forward+backward with full logits and log_softmax+gather, a
                reference forward with the adapter disabled and no grad, the DPO loss and an AdamW step
Every row trains on the same batches in the same order (sequential sampling), the reference (DPO, IPO, KTO)
computed at each step; the first --warmup steps are not timed. s/step is the median of the timed steps (the rows
run one after another, so a burst of other work on a shared machine slows one row: the median ignores bursts
shorter than half the steps; every step time is in the JSON). CPU s/step is the CPU time the process spent in a
step: on a machine shared with other work it moves much less than the wall time, with `--threads 1` at least (two
threads on two busy cores wait on each other). tokens/s counts the non-pad tokens of TRL's rows (KTO: its completion
and KL rows). positions/step counts the positions the decoder layers computed per step (every forward: policy,
reference, KL rows, the recomputation of activation checkpointing). Peak RSS is sampled every 20 ms while the row
runs and includes what the process holds before the first row (libraries, data: `baseline_rss_mib`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import psutil
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from transformers import TrainerCallback
from transformers.modeling_layers import GradientCheckpointingLayer

from prefopt import config as recipes_config
from prefopt.adapters import lora_config
from prefopt.data import load_splits
from prefopt.models import load_model, load_tokenizer
from prefopt.recipe import load_recipe
from prefopt.run import Models, build_trainer, plan_run, trl_config
from prefopt.shared_prompt import PAD, share_prompts
from prefopt.trl_args import METHOD_KEYS, TRLS_OWN_LOSS

REPO = Path(__file__).resolve().parents[1]

# TRL's own trainer of each method (module, class): the plain_trl and trl_config rows.
TRL_TRAINERS = {
    "dpo": ("trl", "DPOTrainer"),
    "ipo": ("trl", "DPOTrainer"),
    "kto": ("trl", "KTOTrainer"),
    "orpo": ("trl.experimental.orpo", "ORPOTrainer"),
    "cpo": ("trl.experimental.cpo", "CPOTrainer"),
    "simpo": ("trl.experimental.cpo", "CPOTrainer"),
    "rm": ("trl", "RewardTrainer"),
    "sft": ("trl", "SFTTrainer"),
}
METHODS = tuple(TRL_TRAINERS)
# An hh-rlhf-like length mix, in words (about one SmolLM2 token each): the prompt is the dialogue before the last
# assistant turn, the answers one turn each; medians and log-scale spreads are rough guesses at its shape (no
# download here), not measured.
RAGGED_MEDIANS = {"prompt": 90, "chosen": 60, "rejected": 55}
RAGGED_SIGMA = 0.8
RAGGED_ANSWER_CORRELATION = 0.5  # of log-lengths: a long chosen answer tends to go with a long rejected one
WORDS = "the of and to in is you that it he was for on are as with his they at be this from have or by one".split()


def compose_config(*overrides: str):
    return recipes_config.compose_config(*overrides, output_dir=tempfile.mkdtemp(prefix="bench-"))


class StepTimer(TrainerCallback):
    """Each step's wall time, and the CPU time the process spent in it (all its threads)."""

    def __init__(self):
        self.times, self.cpu_times = [], []

    def on_step_begin(self, args, state, control, **kwargs):
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)
        self.cpu_times.append(time.process_time() - self._cpu_start)


class PeakRSS:
    """The largest resident set size seen while the block runs (a thread samples it)."""

    def __enter__(self):
        self.peak, self._done = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        process = psutil.Process()
        while not self._done.wait(0.02):
            self.peak = max(self.peak, process.memory_info().rss)

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, psutil.Process().memory_info().rss)


def release_memory() -> None:
    """Free the last row's tensors and hand the allocator's free pages back, so the next row's peak is its own."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed memory mapped otherwise


class PositionCounter:
    """Positions the decoder layers compute: the first layer's MLP adds up the rows x length of each call. Its
    forward is wrapped, not hooked: activation checkpointing recomputes it without running module hooks."""

    def __init__(self):
        self.positions, self._module = 0, None

    def attach(self, model) -> None:
        first = next(m for m in model.modules() if isinstance(m, GradientCheckpointingLayer))
        self._module = getattr(first, "mlp", first)
        forward = self._module.forward

        def counting(hidden, *args, **kwargs):
            self.positions += hidden.shape[0] * hidden.shape[1]
            return forward(hidden, *args, **kwargs)

        self._module.forward = counting

    def detach(self) -> None:
        if self._module is not None:
            del self._module.forward  # the class's forward again


def _model(cfg, recipe, counter):
    model = load_model(cfg.model, "fp32", seed=cfg.train.seed, model_class=recipe.model_class)
    counter.attach(model)
    return model


def run_recipe(cfg, recipe, tokenizer, rows, callbacks, counter):
    # The launcher's seam, on the bench's model (its positions counted) and rows.
    models = Models(_model(cfg, recipe, counter), None, lora_config(cfg.peft, recipe.model_class))
    trainer = build_trainer(cfg, plan_run(cfg), models, tokenizer, rows, None, callbacks)
    batches = list(trainer.get_train_dataloader())  # what every row trains on, in this order
    trainer.train()
    return batches


def trl_trainer_class(method: str):
    module, name = TRL_TRAINERS[method]
    return getattr(__import__(module, fromlist=[name]), name)


def plain_config(cfg, recipe):
    """TRL's config defaults, but fp32 (bf16 is ~100x slower on CPU), the method's hyperparameters and the recipe's
    optimizer, batches and steps."""
    method = OmegaConf.to_container(cfg.method, resolve=True)
    launcher_keys = (*METHOD_KEYS, *recipe.own_keys, "precompute_ref_log_probs")
    hyperparameters = {k: v for k, v in method.items() if k not in launcher_keys}
    return recipe.config_class(
        output_dir=cfg.train.output_dir,
        bf16=False,
        learning_rate=cfg.train.learning_rate,
        per_device_train_batch_size=cfg.train.per_device_train_batch_size,
        max_length=cfg.train.max_length,
        max_steps=cfg.train.max_steps,
        train_sampling_strategy="sequential",
        report_to=[],
        disable_tqdm=True,
        **hyperparameters,
    )


def run_trl(cfg, recipe, tokenizer, rows, callbacks, counter, args):
    trainer = trl_trainer_class(cfg.method.name)(
        model=_model(cfg, recipe, counter),
        args=args,
        train_dataset=rows,
        processing_class=tokenizer,
        peft_config=lora_config(cfg.peft, recipe.model_class),
        callbacks=callbacks,
    )
    trainer.train()


def _sequence_logps(model, ids, attention, mask):
    logits = model(input_ids=ids, attention_mask=attention, use_cache=False).logits[:, :-1].float()
    return (logits.log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1) * mask).sum(1)


def run_floor(cfg, batches, timer, counter):
    from peft import get_peft_model

    base = load_model(cfg.model, "fp32", seed=cfg.train.seed)
    counter.attach(base)
    model = get_peft_model(base, lora_config(cfg.peft))
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # DPOConfig's disable_dropout, as in the two trainers
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.learning_rate)
    beta = cfg.method.beta
    for batch in batches:
        timer.on_step_begin(None, None, None)
        ids, attention = batch["input_ids"], batch["attention_mask"]
        mask = batch["completion_mask"][:, 1:].float()

        policy_chosen, policy_rejected = _sequence_logps(model, ids, attention, mask).chunk(2)
        with torch.no_grad(), model.disable_adapter():
            ref_chosen, ref_rejected = _sequence_logps(model, ids, attention, mask).chunk(2)
        loss = -F.logsigmoid(beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        timer.on_step_end(None, None, None)


def rows_of(method: str) -> tuple[str, ...]:
    return ("recipe", "plain_trl", "trl_config") + (("floor",) if method == "dpo" else ())


def measure(method: str, model: str, batch_size: int, steps: int, warmup: int) -> dict:
    total = steps + warmup
    cfg = compose_config(
        f"method={method}",
        f"model={model}",
        "logger=none",
        *TRLS_OWN_LOSS.get(method, ()),  # every row computes TRL's own loss
        f"train.per_device_train_batch_size={batch_size}",
        f"train.max_steps={total}",
        "train.save_strategy=no",
        "+train.train_sampling_strategy=sequential",
        "+train.disable_tqdm=true",
    )
    recipe = load_recipe(cfg.method.recipe)
    tokenizer = load_tokenizer(cfg.model)
    train, _ = load_splits(cfg.dataset, recipe.data_format)
    rows = train.select(range(total * batch_size))
    results, batches = {}, None
    release_memory()
    baseline_rss = psutil.Process().memory_info().rss
    for name in rows_of(method):
        timer, counter = StepTimer(), PositionCounter()
        with PeakRSS() as rss:
            if name == "recipe":
                batches = run_recipe(cfg, recipe, tokenizer, rows, [timer], counter)
            elif name == "plain_trl":
                run_trl(cfg, recipe, tokenizer, rows, [timer], counter, plain_config(cfg, recipe))
            elif name == "trl_config":
                run_trl(cfg, recipe, tokenizer, rows, [timer], counter, trl_config(cfg))
            else:
                run_floor(cfg, batches, timer, counter)
        counter.detach()
        release_memory()
        seconds = statistics.median(timer.times[warmup:total])
        results[name] = {
            "s_per_step": seconds,
            "cpu_s_per_step": statistics.median(timer.cpu_times[warmup:total]),
            "tokens_per_s": tokens_per_step(batches[warmup:total]) / seconds,
            "positions_per_step": counter.positions / total,
            "peak_rss_mib": rss.peak / 2**20,
            "step_s": timer.times,
            "cpu_step_s": timer.cpu_times,
        }
    timed = batches[warmup:total]
    real, positions = token_counts(timed)
    ratios = {
        "plain_over_recipe": results["plain_trl"]["s_per_step"] / results["recipe"]["s_per_step"],
        "trl_config_over_recipe": results["trl_config"]["s_per_step"] / results["recipe"]["s_per_step"],
        # CPU seconds: steadier than wall time on a machine shared with other work, with one thread at least
        "plain_over_recipe_cpu": results["plain_trl"]["cpu_s_per_step"] / results["recipe"]["cpu_s_per_step"],
    }
    if "floor" in results:
        ratios["recipe_over_floor"] = results["recipe"]["s_per_step"] / results["floor"]["s_per_step"]
    return {
        "method": method,
        "model": model,
        "batch_size": batch_size,
        "steps": steps,
        "warmup": warmup,
        "threads": torch.get_num_threads(),
        "tokens_per_step": tokens_per_step(timed),
        "baseline_rss_mib": baseline_rss / 2**20,
        "non_pad_fraction": real / positions,
        "rows": results,
        "ratios": ratios,
    }


def token_counts(batches) -> tuple[int, int]:
    """(non-pad tokens, positions) of TRL's rows in `batches`: every attention mask of a batch but the prompt's
    (ORPO and CPO collate it apart; their forward takes the chosen and rejected rows)."""
    masks = [m for b in batches for k, m in b.items() if k.endswith("attention_mask") and not k.startswith("prompt")]
    return sum(int(m.sum()) for m in masks), sum(m.numel() for m in masks)


def tokens_per_step(batches) -> float:
    return token_counts(batches)[0] / len(batches)


def ragged_pairs(n: int, seed: int = 0) -> list[dict]:
    """Plain-text pairs whose prompt/chosen/rejected word counts are lognormal (RAGGED_* above)."""
    generator = torch.Generator().manual_seed(seed)
    normal = torch.randn(n, 3, generator=generator)
    rho = RAGGED_ANSWER_CORRELATION
    normal[:, 2] = rho * normal[:, 1] + math.sqrt(1 - rho**2) * normal[:, 2]
    medians = torch.tensor([RAGGED_MEDIANS[k] for k in ("prompt", "chosen", "rejected")], dtype=torch.float)
    counts = (medians * torch.exp(RAGGED_SIGMA * normal)).round().clamp(min=1).long().tolist()
    words = torch.randint(len(WORDS), (n, 3, max(max(row) for row in counts)), generator=generator).tolist()
    return [
        {
            key: " ".join(WORDS[w] for w in words[i][j][: counts[i][j]])
            for j, key in enumerate(("prompt", "chosen", "rejected"))
        }
        for i in range(n)
    ]


# (sampling strategy, method.share_prompt): TRL's default layout and sampler first, the recipe's default last.
RAGGED_SETUPS = (("random", False), ("group_by_length", False), ("random", True), ("group_by_length", True))


def padding_fractions(model: str, pairs: int, rows: int = 1024, max_length: int = 1024) -> dict:
    """Over one epoch of ragged pairs, per sampling strategy and row layout: the share of the positions the model
    computes that are real tokens, and how many positions that is next to TRL's default."""
    from datasets import Dataset

    dataset = Dataset.from_list(ragged_pairs(rows))
    result = {"rows": rows, "pairs": pairs, "max_length": max_length, "setups": {}}
    for strategy, share in RAGGED_SETUPS:
        cfg = compose_config(
            f"model={model}",
            "logger=none",
            "method.loss_type=[sigmoid]",
            f"train.per_device_train_batch_size={pairs}",
            f"train.max_length={max_length}",
            f"+train.train_sampling_strategy={strategy}",
            f"method.share_prompt={share}",
        )
        tokenizer = load_tokenizer(cfg.model)
        models = Models(load_model(cfg.model, "fp32", seed=cfg.train.seed), None, lora_config(cfg.peft))
        trainer = build_trainer(cfg, plan_run(cfg), models, tokenizer, dataset, None, [])
        real, positions = [], []
        for batch in trainer.get_train_dataloader():
            rows_of_pairs = (  # the rows the backbone computes: packed around a common prefix where that pays
                share_prompts(batch["input_ids"], batch["attention_mask"], batch["completion_mask"]).packed()
                if share
                else None
            )
            mask = rows_of_pairs.segments != PAD if rows_of_pairs is not None else batch["attention_mask"].bool()
            real.append(int(mask.sum()))
            positions.append(mask.numel())
        result["setups"][f"{strategy}{'+shared' if share else ''}"] = {
            "mean_batch_fraction": sum(r / n for r, n in zip(real, positions)) / len(real),
            "token_fraction": sum(real) / sum(positions),
            "positions": sum(positions),
            "batches": len(real),
        }
        if (strategy, share) == RAGGED_SETUPS[0]:  # the same tokenized pairs in every setup
            result["pair_bound"] = pair_bound(trainer.train_dataset, max_length)
        del trainer
    trl_positions = result["setups"]["random"]["positions"]
    for setup in result["setups"].values():
        setup["positions_vs_trl"] = setup["positions"] / trl_positions
    return result


def pair_bound(tokenized, max_length: int) -> float:
    """The best any sampler can reach: TRL pads a pair's shorter answer to its longer one in every batch."""
    fractions = []
    for p, c, r in zip(tokenized["prompt_ids"], tokenized["chosen_ids"], tokenized["rejected_ids"]):
        chosen, rejected = min(len(p) + len(c), max_length), min(len(p) + len(r), max_length)
        fractions.append((chosen + rejected) / (2 * max(chosen, rejected)))
    return sum(fractions) / len(fractions)


def print_table(result: dict) -> None:
    print(
        f"{result['method']} on {result['model']}, batches of {result['batch_size']}, {result['steps']} timed steps "
        f"after {result['warmup']} warm-up, {result['threads']} threads; {result['tokens_per_step']:.0f} non-pad "
        f"tokens/step ({result['non_pad_fraction']:.0%} of TRL's padded rows); load average before "
        f"{result['load_average']}, after {result['load_average_after']}; RSS before the rows "
        f"{result['baseline_rss_mib']:.0f} MiB"
    )
    print(f"{'row':10} {'s/step':>8} {'CPU s/step':>11} {'tokens/s':>9} {'positions/step':>15} {'peak RSS MiB':>13}")
    for name, row in result["rows"].items():
        print(
            f"{name:10} {row['s_per_step']:8.2f} {row['cpu_s_per_step']:11.2f} {row['tokens_per_s']:9.0f} "
            f"{row['positions_per_step']:15.0f} {row['peak_rss_mib']:13.0f}"
        )
    ratios = result["ratios"]
    print(
        f"plain TRL / recipe: {ratios['plain_over_recipe']:.2f}x the time ({ratios['plain_over_recipe_cpu']:.2f}x the "
        f"CPU time); TRL with the recipe's config / recipe: {ratios['trl_config_over_recipe']:.2f}x"
        + (f"; recipe / floor: {ratios['recipe_over_floor']:.2f}x" if "recipe_over_floor" in ratios else "")
    )
    ragged = result.get("ragged")
    if ragged:
        print(
            f"ragged pairs ({ragged['rows']} hh-rlhf-like rows, batches of {ragged['pairs']} pairs, max_length "
            f"{ragged['max_length']}): real tokens among the positions computed (mean per batch / all batches), "
            f"and positions computed next to TRL's default:"
        )
        for name, r in ragged["setups"].items():
            print(
                f"  {name:23} {r['mean_batch_fraction']:6.1%} / {r['token_fraction']:6.1%}   {r['positions_vs_trl']:.2f}x"
            )
        print(
            f"  each pair alone in TRL's layout: {ragged['pair_bound']:.1%} (it pads the shorter answer to the longer)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="dpo", choices=METHODS, help="a conf/method/ name")
    parser.add_argument("--model", default="smollm2-135m", help="a conf/model/ name (tiny-random: seconds)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    parser.add_argument("--batch", type=int, default=8, help="examples per step: pairs (KTO: unpaired rows; SFT: rows)")
    parser.add_argument("--ragged", action="store_true", help="DPO: also padding with TRL's sampler vs length grouping")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if args.ragged and args.method != "dpo":
        parser.error("--ragged measures DPO's pairs: use it with --method dpo")
    if args.threads:
        torch.set_num_threads(args.threads)  # on a machine shared with other work, fewer threads contend less
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    load_before = [round(x, 2) for x in os.getloadavg()]
    # The trainers print their logs; with --json stdout carries the JSON object only.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        result = measure(args.method, args.model, args.batch, args.steps, args.warmup)
        result["load_average"] = load_before  # other work on the machine slows every row
        result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        if args.ragged:
            result["ragged"] = padding_fractions(args.model, args.batch)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
