"""Answers per second: one prompt at a time with transformers' generate (make pairs before it batched) vs the batched
generation every tool now uses (prefopt.evaluation.generation), in one process, on the built-in task's prompts.

Run: `make bench-generation` (the embedded SmolLM2, about a minute on 2 cores) or
`python bench/generation.py --model tiny-random --prompts 4 --json` (seconds). Two modes, each timed both ways:
  greedy   one answer per prompt; the batched answers are compared token for token with the one-at-a-time ones
  sampled  --samples answers per prompt at temperature 1, top_p 0.95 (what `make pairs` draws)
Answers stop at the model's end-of-turn token or after --max-new-tokens. The first prompt is generated once before
timing (lazy initializations). `--threads` sets torch's CPU threads (default: torch's own choice); the load average
before and after is printed, since other work on the cores slows both ways, torch's threads most.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from prefopt.config import compose_config
from prefopt.data.pairs import builtin_prompts
from prefopt.evaluation.encoding import encode_prompt
from prefopt.evaluation.generation import _stop_ids, generate
from prefopt.models import check_available, load_model, load_tokenizer

TOP_P = 0.95


@torch.no_grad()
def one_at_a_time(model, tokenizer, prompts_ids, *, max_new_tokens, num_samples=0) -> list[list[int]]:
    """The way before: transformers' generate on one prompt, its samples as num_return_sequences (KV cache on)."""
    stop = _stop_ids(tokenizer, model)
    sampling = num_samples > 0
    answers = []
    for prompt in prompts_ids:
        out = model.generate(
            input_ids=torch.tensor([prompt], device=model.device),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=model.device),
            do_sample=sampling,
            temperature=1.0 if sampling else None,
            top_p=TOP_P if sampling else None,
            top_k=0 if sampling else None,
            num_return_sequences=max(num_samples, 1),
            max_new_tokens=max_new_tokens,
            eos_token_id=stop,
            pad_token_id=tokenizer.pad_token_id,
        )
        for row in out[:, len(prompt) :].tolist():
            ends = [i for i, token in enumerate(row) if token in stop]
            answers.append(row[: ends[0] + 1] if ends else row)
    return answers


def batched(model, tokenizer, prompts_ids, *, max_new_tokens, batch_size, num_samples=0) -> list[list[int]]:
    sampling = dict(num_samples=num_samples, temperature=1.0, top_p=TOP_P) if num_samples else {}
    return generate(
        model, tokenizer, prompts_ids, max_new_tokens=max_new_tokens, batch_size=batch_size, logps=False, **sampling
    ).ids


def timed(fn, *args, **kwargs) -> tuple[list[list[int]], float]:
    torch.manual_seed(0)
    started = time.perf_counter()
    answers = fn(*args, **kwargs)
    return answers, time.perf_counter() - started


def measure(model, tokenizer, prompts_ids, args) -> dict:
    generate_args = dict(max_new_tokens=args.max_new_tokens)
    one_at_a_time(model, tokenizer, prompts_ids[:1], **generate_args)  # warm-up, untimed
    batched(model, tokenizer, prompts_ids[:1], batch_size=args.batch_size, **generate_args)
    rows, answers_of = [], {}
    for mode, num_samples in (("greedy", 0), ("sampled", args.samples)):
        for way, fn, extra in (
            ("one_at_a_time", one_at_a_time, {}),
            ("batched", batched, {"batch_size": args.batch_size}),
        ):
            answers, seconds = timed(
                fn, model, tokenizer, prompts_ids, num_samples=num_samples, **generate_args, **extra
            )
            answers_of[mode, way] = answers
            rows.append(
                {
                    "mode": mode,
                    "way": way,
                    "answers": len(answers),
                    "new_tokens": sum(map(len, answers)),
                    "seconds": seconds,
                    "answers_per_s": round(len(answers) / seconds, 2),
                }
            )
    for row in rows:
        before = next(r for r in rows if r["mode"] == row["mode"] and r["way"] == "one_at_a_time")
        row["speedup"] = round(before["seconds"] / row["seconds"], 2)
    for row in rows:
        row["seconds"] = round(row["seconds"], 3)
    greedy_before, greedy_after = answers_of["greedy", "one_at_a_time"], answers_of["greedy", "batched"]
    same = sum(a == b for a, b in zip(greedy_before, greedy_after))
    return {"rows": rows, "greedy_identical": same == len(greedy_before), "greedy_identical_count": same}


def table(result: dict) -> str:
    lines = [
        f"{result['model']}: {result['prompts']} built-in prompts, up to {result['max_new_tokens']} new tokens, "
        f"sampled x{result['samples']} at T=1 top_p {TOP_P}, batch {result['batch_size']}, {result['threads']} torch "
        f"threads, load average {result['load_average'][0]} -> {result['load_average'][1]}",
        "",
        "| mode | way | answers | new tokens | seconds | answers/s | speed-up |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['mode']} | {r['way']} | {r['answers']} | {r['new_tokens']} | {r['seconds']} | "
            f"{r['answers_per_s']} | {r['speedup']}x |"
        )
    lines.append("")
    lines.append(
        f"greedy answers identical (token ids): {'yes' if result['greedy_identical'] else 'NO'} "
        f"({result['greedy_identical_count']} of {result['prompts']})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="a conf/model/ name")
    parser.add_argument("--prompts", type=int, default=16, help="built-in training prompts")
    parser.add_argument("--samples", type=int, default=4, help="sampled answers per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=32, help="answers generated together (batched way)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose_config(f"model={args.model}")
    check_available(cfg.model)
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, "fp32").eval()
    if torch.cuda.is_available():
        model.to("cuda")
    prompts_ids = [encode_prompt(tokenizer, row["prompt"]) for row in builtin_prompts(args.prompts)]
    load_before = os.getloadavg()[0]
    measured = measure(model, tokenizer, prompts_ids, args)
    result = {
        "model": args.model,
        "prompts": len(prompts_ids),
        "samples": args.samples,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "device": str(model.device),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        **measured,
    }
    print(json.dumps(result) if args.json else table(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
