"""Log-probabilities of given answers, and what they measure: DPO's implicit rewards on held-out pairs, and KL to
the reference on the policy's own answers. A sequence's log-probability is the sum over its completion tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prefopt.errors import RecipeError
from prefopt.evaluation.encoding import encode_pair, truncate
from prefopt.evaluation.generation import Answers
from prefopt.evaluation.models import PolicyAndReference, _device
from prefopt.shared_prompt import add_shared_prompt_backbone, pack_sequences, rows_computed_as, share_prompts


@torch.no_grad()
def sequence_logps(
    model: torch.nn.Module, sequences: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int
) -> torch.Tensor:
    """Sum of log p(token) over each (prompt, completion)'s completion tokens, in float32 (float64 result).

    Where the model's attention takes a custom mask, each batch goes through the backbone as one packed row (the
    tokens its sequences all start with computed once, no padding) and, when it is a batch of pairs (its second half
    the same prompts as its first, as `pair_metrics` orders them), each prompt once for both answers
    (prefopt.shared_prompt): the same log-probs, to float rounding."""
    model.eval()
    device = _device(model)
    shares = add_shared_prompt_backbone(model)
    sums = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        length = max(len(p) + len(c) for p, c in chunk)
        ids = torch.full((len(chunk), length), pad_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        completion = torch.zeros_like(ids)
        for row, (prompt_ids, completion_ids) in enumerate(chunk):
            end = len(prompt_ids) + len(completion_ids)
            ids[row, :end] = torch.tensor(prompt_ids + completion_ids)
            attention[row, :end] = 1
            completion[row, len(prompt_ids) : end] = 1
        ids, attention, completion = ids.to(device), attention.to(device), completion.to(device)
        # Only the positions from the shortest prompt's last token on predict completion tokens: the LM head and the
        # softmax over the vocabulary skip the rest (most of a row is its prompt).
        first = min(len(prompt_ids) for prompt_ids, _ in chunk) - 1
        with rows_computed_as(_packed_layout(ids, attention, completion) if shares else None):
            outputs = model(input_ids=ids, attention_mask=attention, use_cache=False, logits_to_keep=length - first)
        logits = outputs.logits[:, :-1].float()
        token_logps = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, first + 1 :, None]).squeeze(-1)
        sums.append((token_logps * completion[:, first + 1 :]).sum(dim=1).double().cpu())
    return torch.cat(sums) if sums else torch.zeros(0, dtype=torch.float64)


def _packed_layout(ids: torch.Tensor, attention: torch.Tensor, completion: torch.Tensor):
    pairs = share_prompts(ids, attention, completion)
    return pairs.packed() if pairs is not None else pack_sequences(ids, attention)


def _pair_batches(chosen: list, rejected: list, batch_size: int) -> tuple[list, list[int]]:
    """The sequences of the pairs in batches of [chosen; rejected] halves (each prompt then computed once for both
    answers), and for each of chosen + rejected its index in that order."""
    per_batch = max(1, batch_size // 2)
    sequences, index = [], [0] * (2 * len(chosen))
    for start in range(0, len(chosen), per_batch):
        pairs = range(start, min(start + per_batch, len(chosen)))
        for side, answers in enumerate((chosen, rejected)):
            for i in pairs:
                index[side * len(chosen) + i] = len(sequences)
                sequences.append(answers[i])
    return sequences, index


def pair_metrics(
    models: PolicyAndReference, tokenizer, pairs, beta: float, batch_size: int = 16, max_length: int | None = None
) -> dict:
    """DPO's implicit rewards r = beta * (log pi(y|x) - log pi_ref(y|x)) on held-out pairs, for any method.

    loss is the DPO (sigmoid) loss -log sigmoid(r_chosen - r_rejected); reward accuracy counts r_chosen > r_rejected
    (strictly, as TRL does: an untrained policy scores 0). loss_se and reward_margin_se: standard errors over pairs.
    """
    sides = []
    skipped = 0
    for row in pairs:
        prompt_ids, chosen_ids, rejected_ids = encode_pair(tokenizer, row["prompt"], row["chosen"], row["rejected"])
        if max_length is not None and len(prompt_ids) >= max_length:
            skipped += 1  # TRL drops these too: nothing of the answer would be left
            continue
        sides.append((truncate(prompt_ids, chosen_ids, max_length), truncate(prompt_ids, rejected_ids, max_length)))
    if not sides:
        raise RecipeError("no held-out pairs to evaluate (all prompts are longer than train.max_length?).")
    even_batch = batch_size + batch_size % 2  # a batch holds whole pairs
    sequences, index = _pair_batches([s[0] for s in sides], [s[1] for s in sides], even_batch)
    pad_id = tokenizer.pad_token_id
    policy = sequence_logps(models.policy, sequences, even_batch, pad_id)[index]
    with models.reference_model() as reference_model:
        reference = sequence_logps(reference_model, sequences, even_batch, pad_id)[index]
    n = len(sides)
    chosen_rewards = beta * (policy[:n] - reference[:n])
    rejected_rewards = beta * (policy[n:] - reference[n:])
    margins = chosen_rewards - rejected_rewards
    losses = -F.logsigmoid(margins)
    return {
        "num_pairs": n,
        "skipped_pairs": skipped,
        "beta": beta,
        "loss": float(losses.mean()),
        "loss_se": _standard_error(losses),
        "reward_accuracy": float((chosen_rewards > rejected_rewards).double().mean()),
        "reward_margin": float(margins.mean()),
        "reward_margin_se": _standard_error(margins),
        "chosen_reward": float(chosen_rewards.mean()),
        "rejected_reward": float(rejected_rewards.mean()),
        "chosen_logps": float(policy[:n].mean()),
        "rejected_logps": float(policy[n:].mean()),
    }


def _standard_error(values: torch.Tensor) -> float:
    """Standard error of the mean over pairs: sample standard deviation / sqrt(n); NaN for a single pair."""
    return float(values.std() / len(values) ** 0.5) if len(values) > 1 else float("nan")


def kl_per_answer(
    models: PolicyAndReference, prompts_ids, answers: Answers, batch_size: int, pad_id: int
) -> list[float]:
    """log pi(y|x) - log pi_ref(y|x) summed over each policy answer's tokens: one-sample estimates of KL(pi || pi_ref).

    Unbiased when y is sampled from pi at temperature 1; greedy answers give a cheaper, biased proxy.
    """
    with models.reference_model() as reference_model:
        reference = sequence_logps(reference_model, list(zip(prompts_ids, answers.ids)), batch_size, pad_id)
    return [policy - ref for policy, ref in zip(answers.logps, reference.tolist())]
