"""The held-out prompts of any dataset, and the answers policy and reference give them: what the verifier and the
judges score and what samples.jsonl holds.

The prompts are the distinct prompts of the run's eval split in its order (the built-in task: its held-out prompts,
kinds interleaved), up to `eval_generation.max_prompts`; conversations go through the chat template. A prompt of
train.max_length tokens or more is skipped and counted, as training drops such rows. Both models answer the same
prompts with the same settings: greedy, or one sample each at `eval_generation.temperature`
(`eval_generation.decoding=sampled`).
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from prefopt.data import builtin
from prefopt.evaluation.encoding import encode_prompt
from prefopt.evaluation.generation import GenerationSettings, decode, generate
from prefopt.evaluation.logprobs import kl_per_answer
from prefopt.evaluation.models import PolicyAndReference

log = logging.getLogger(__name__)


@dataclass
class HeldoutPrompts:
    """Distinct held-out prompts (a conversation or plain text) with their token ids; on the built-in task, the
    verifiable task of each. `note` says why there are none."""

    prompts: list
    ids: list[list[int]]
    tasks: list[builtin.Task] | None = None
    skipped_too_long: int = 0
    note: str | None = None


def heldout_prompts(cfg: DictConfig, tokenizer, max_prompts: int) -> HeldoutPrompts:
    """The run's held-out prompts (module docstring): the built-in task's, or the eval split's of any other dataset."""
    if cfg.dataset.format == "builtin":
        tasks = builtin.heldout_tasks(cfg.dataset.get("eval_split") or "test", cfg.dataset.seed, max_prompts)
        prompts = [[{"role": "user", "content": t.prompt}] for t in tasks]
        return HeldoutPrompts(prompts, [encode_prompt(tokenizer, p) for p in prompts], tasks)
    from prefopt.data import load_splits
    from prefopt.data.local import prompt_key
    from prefopt.recipe import load_recipe

    _, heldout = load_splits(cfg.dataset, load_recipe(cfg.method.recipe).data_format)
    limit = cfg.train.get("max_length")
    seen, prompts, ids, too_long = set(), [], [], 0
    for prompt in heldout["prompt"] if len(heldout) else []:
        key = prompt_key(prompt)
        if key in seen:
            continue
        seen.add(key)
        prompt_ids = encode_prompt(tokenizer, prompt)
        if limit and len(prompt_ids) >= limit:
            too_long += 1
            continue
        prompts.append(prompt)
        ids.append(prompt_ids)
        if len(prompts) == max_prompts:
            break
    note = None
    if not prompts:
        note = f"dataset '{cfg.dataset.name}' has no held-out prompts to answer" + (
            f": all {too_long} are train.max_length={limit} tokens or longer"
            if too_long
            else " (its eval split is empty: give it an eval split, or hold out prompts with dataset.eval_fraction)"
        )
    return HeldoutPrompts(prompts, ids, None, too_long, note)


@dataclass
class HeldoutAnswers:
    """Each model's answer per prompt (text without special tokens), its length in tokens, whether it ended by itself
    before max_new_tokens, and log pi - log pi_ref of the policy's answer (a one-sample KL estimate)."""

    reference: list[str]
    policy: list[str]
    reference_tokens: list[int]
    policy_tokens: list[int]
    reference_finished: list[bool]
    policy_finished: list[bool]
    kl: list[float]


def answer_prompts(
    models: PolicyAndReference, tokenizer, prompts_ids: list[list[int]], settings: GenerationSettings
) -> HeldoutAnswers:
    """Both models' answers, generated in batches, greedy or one sample each (`settings.decoding`)."""
    options = dict(max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size)
    if settings.decoding == "sampled":
        options.update(num_samples=1, temperature=settings.temperature)
    torch.manual_seed(settings.seed)
    policy = generate(models.policy, tokenizer, prompts_ids, **options)
    torch.manual_seed(settings.seed)
    with models.reference_model() as reference_model:
        reference = generate(reference_model, tokenizer, prompts_ids, logps=False, **options)
    kl = kl_per_answer(models, prompts_ids, policy, settings.batch_size, tokenizer.pad_token_id)
    return HeldoutAnswers(
        reference=[decode(tokenizer, ids) for ids in reference.ids],
        policy=[decode(tokenizer, ids) for ids in policy.ids],
        reference_tokens=[len(ids) for ids in reference.ids],
        policy_tokens=[len(ids) for ids in policy.ids],
        reference_finished=reference.finished,
        policy_finished=policy.finished,
        kl=kl,
    )


def mean_or_nan(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else float("nan")


def standard_error(values) -> float:
    """Standard error of the mean over answers (or prompts): sample standard deviation / sqrt(n); NaN under two values."""
    values = [float(v) for v in values]
    if len(values) < 2:
        return float("nan")
    return statistics.stdev(values) / math.sqrt(len(values))


def answers_section(heldout: HeldoutPrompts, answers: HeldoutAnswers | None, settings: GenerationSettings) -> dict:
    """eval.json's `answers`: how many prompts were answered and how, the answers' lengths, how many ran out of
    tokens, and KL(policy || reference) on the policy's answers with its standard error over them."""
    section = {
        "num_prompts": len(heldout.prompts),
        "skipped_too_long": heldout.skipped_too_long,
        "decoding": settings.decoding,
        "temperature": settings.temperature if settings.decoding == "sampled" else None,
        "max_new_tokens": settings.max_new_tokens,
        "note": heldout.note,
    }
    if answers is None:
        return section
    return {
        **section,
        "mean_length_chars": {
            "reference": mean_or_nan(map(len, answers.reference)),
            "policy": mean_or_nan(map(len, answers.policy)),
        },
        "mean_length_tokens": {
            "reference": mean_or_nan(answers.reference_tokens),
            "policy": mean_or_nan(answers.policy_tokens),
        },
        "unfinished": {
            "reference": sum(not f for f in answers.reference_finished),
            "policy": sum(not f for f in answers.policy_finished),
        },
        "kl_policy_reference": mean_or_nan(answers.kl),
        "kl_policy_reference_se": standard_error(answers.kl),
    }
