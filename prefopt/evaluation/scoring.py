"""Answers to the built-in task's held-out prompts, scored by its verifier: pass rates of policy and reference,
the policy's win rate over the reference, answer lengths, and KL to the reference on the policy's answers.

Rates come with their counts (`num_prompts`, wins/losses/ties), from which a report draws their intervals; KL with
its standard error over answers; each sample keeps its own verdicts and KL, for any other statistic over prompts."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from prefopt.data import builtin
from prefopt.evaluation.answers import HeldoutAnswers, answer_prompts, mean_or_nan, standard_error
from prefopt.evaluation.encoding import encode_prompt
from prefopt.evaluation.generation import GenerationSettings, decode, generate
from prefopt.evaluation.logprobs import kl_per_answer
from prefopt.evaluation.models import PolicyAndReference


def heldout_tasks(dataset_cfg: DictConfig, max_prompts: int) -> list[builtin.Task]:
    """The distinct prompts of a built-in dataset's held-out split (`dataset.eval_split`), kinds interleaved."""
    return builtin.heldout_tasks(dataset_cfg.get("eval_split") or "test", dataset_cfg.seed, max_prompts)


def read_tasks(path) -> list[builtin.Task]:
    """Verifiable prompts from a JSONL/CSV/Parquet file: one row per prompt with `kind` (sum, capital, uppercase,
    count), `prompt`, and `answer` (the expected text) or, for count, `n`. Held-out prompts of your own (other
    numbers, countries, words) to check that a run's gain transfers beyond the built-in lists."""
    from prefopt.data.local import data_files, read_records
    from prefopt.errors import RecipeError

    tasks = []
    for file in data_files(path):
        for where, record in read_records(file):
            kind, prompt = record.get("kind"), record.get("prompt")
            if kind not in builtin.KINDS:
                raise RecipeError(f"{where}: 'kind' is {kind!r}; use one of {', '.join(builtin.KINDS)}.")
            if not isinstance(prompt, str) or not prompt.strip():
                raise RecipeError(f"{where}: 'prompt' must be a non-empty string.")
            answer, n = str(record.get("answer") or ""), record.get("n") or 0
            if kind == "count" and (not isinstance(n, int) or n < 1):
                raise RecipeError(f"{where}: a count prompt needs 'n', the number of colors asked for (>= 1).")
            if kind != "count" and not answer.strip():
                raise RecipeError(f"{where}: a {kind} prompt needs 'answer', the expected text.")
            tasks.append(builtin.Task(kind, prompt, answer, n))
    if not tasks:
        raise RecipeError(f"{path}: no prompts.")
    return tasks


def score_answers(
    tasks: list[builtin.Task], policy_answers: list[str], reference_answers: list[str]
) -> tuple[dict, list[bool], list[bool]]:
    """(scores, policy passes, reference passes): pass rates overall and per kind, right-content rates (the right
    answer in any format, `builtin.has_right_content`) overall and per kind, win rate (ties count half), mean length
    in characters."""
    if not (len(tasks) == len(policy_answers) == len(reference_answers)) or not tasks:
        raise ValueError("score_answers needs one policy and one reference answer per task, and at least one task")
    policy_pass = [builtin.verify(t, a) for t, a in zip(tasks, policy_answers)]
    reference_pass = [builtin.verify(t, a) for t, a in zip(tasks, reference_answers)]
    policy_content = [builtin.has_right_content(t, a) for t, a in zip(tasks, policy_answers)]
    reference_content = [builtin.has_right_content(t, a) for t, a in zip(tasks, reference_answers)]
    wins = sum(p and not r for p, r in zip(policy_pass, reference_pass))
    losses = sum(r and not p for p, r in zip(policy_pass, reference_pass))
    ties = len(tasks) - wins - losses
    kinds = sorted({t.kind for t in tasks})

    def by_kind(passed):
        return {k: mean_or_nan([ok for t, ok in zip(tasks, passed) if t.kind == k]) for k in kinds}

    return (
        {
            "num_prompts": len(tasks),
            "pass_rate": {"reference": mean_or_nan(reference_pass), "policy": mean_or_nan(policy_pass)},
            "pass_rate_by_kind": {"reference": by_kind(reference_pass), "policy": by_kind(policy_pass)},
            "right_content_rate": {"reference": mean_or_nan(reference_content), "policy": mean_or_nan(policy_content)},
            "right_content_rate_by_kind": {"reference": by_kind(reference_content), "policy": by_kind(policy_content)},
            "win_rate": (wins + 0.5 * ties) / len(tasks),
            "wins": wins,
            "losses": losses,
            "ties": ties,
            "mean_length_chars": {
                "reference": mean_or_nan([len(a) for a in reference_answers]),
                "policy": mean_or_nan([len(a) for a in policy_answers]),
            },
        },
        policy_pass,
        reference_pass,
    )


def generation_metrics(
    models: PolicyAndReference, tokenizer, tasks: list[builtin.Task], settings: GenerationSettings
) -> dict:
    """Answers of policy and reference on `tasks` (greedy, or sampled: `settings.decoding`), scored by the verifier;
    KL on the policy's answers."""
    prompts = [encode_prompt(tokenizer, [{"role": "user", "content": t.prompt}]) for t in tasks]
    answers = answer_prompts(models, tokenizer, prompts, settings)
    return verifier_metrics(models, tokenizer, tasks, prompts, answers, settings)


def verifier_metrics(
    models: PolicyAndReference,
    tokenizer,
    tasks: list[builtin.Task],
    prompts: list[list[int]],
    answers: HeldoutAnswers,
    settings: GenerationSettings,
) -> dict:
    """eval.json's `generation`: the verifier's scores of the answers to `tasks` (`prompts` their token ids), and
    with settings.num_samples the scores of that many sampled answers per prompt."""
    scores, policy_pass, reference_pass = score_answers(tasks, answers.policy, answers.reference)
    return {
        "decoding": settings.decoding,
        "max_new_tokens": settings.max_new_tokens,
        **scores,
        "win_rate_ties": "half",
        "kl_policy_reference": mean_or_nan(answers.kl),
        "kl_policy_reference_se": standard_error(answers.kl),
        "kl_estimate": f"mean over the policy's {settings.decoding} answers of sum over answer tokens of log pi - log pi_ref",
        "samples": [
            {
                "kind": t.kind,
                "prompt": t.prompt,
                "expected": t.answer or f"{t.n} distinct colors",
                "reference_answer": r,
                "policy_answer": p,
                "reference_pass": rp,
                "policy_pass": pp,
                "reference_right_content": builtin.has_right_content(t, r),
                "policy_right_content": builtin.has_right_content(t, p),
                "kl": kl,
            }
            for t, r, p, rp, pp, kl in zip(
                tasks, answers.reference, answers.policy, reference_pass, policy_pass, answers.kl
            )
        ],
        "sampled": sampled_metrics(models, tokenizer, tasks, prompts, settings) if settings.num_samples else None,
    }


def sampled_metrics(models: PolicyAndReference, tokenizer, tasks, prompts, settings: GenerationSettings) -> dict:
    """n answers per prompt at the configured temperature: pass rates over all samples, KL on the policy's."""
    n = settings.num_samples
    gen = dict(
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.batch_size,
        num_samples=n,
        temperature=settings.temperature,
    )
    torch.manual_seed(settings.seed)
    policy_answers = generate(models.policy, tokenizer, prompts, **gen)
    with models.reference_model() as reference_model:
        reference_answers = generate(reference_model, tokenizer, prompts, **gen)
    repeated_tasks = [t for t in tasks for _ in range(n)]
    repeated_prompts = [p for p in prompts for _ in range(n)]
    scores, _, _ = score_answers(
        repeated_tasks,
        [decode(tokenizer, i) for i in policy_answers.ids],
        [decode(tokenizer, i) for i in reference_answers.ids],
    )
    kls = kl_per_answer(models, repeated_prompts, policy_answers, settings.batch_size, tokenizer.pad_token_id)
    return {
        "num_samples": n,
        "temperature": settings.temperature,
        **scores,
        "kl_policy_reference": mean_or_nan(kls),
        # Over all answers; the n answers of one prompt are not independent, so this understates the spread a little.
        "kl_policy_reference_se": standard_error(kls),
    }
