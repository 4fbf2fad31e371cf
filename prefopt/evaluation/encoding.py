"""Sequences tokenized as TRL's DPOTrainer tokenizes them.

The prompt is rendered with the chat template and add_generation_prompt=True; the completion is the rendering of
prompt+answer after that prompt prefix. Plain-text rows (no template) get the end-of-sequence token appended.
"""

from __future__ import annotations


def _render(tokenizer, messages, **kwargs) -> list[int]:
    if isinstance(messages, str):  # plain-text datasets: no template
        return tokenizer(text=messages)["input_ids"]
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)["input_ids"])


def encode_prompt(tokenizer, prompt) -> list[int]:
    """The prompt as the model sees it before answering (chat template with the generation prompt)."""
    return _render(tokenizer, prompt, add_generation_prompt=True)


def _render_answer(tokenizer, prompt, answer) -> list[int]:
    if isinstance(prompt, str):  # plain text: TRL appends the end-of-sequence token to the answer
        answer = answer if answer.endswith(tokenizer.eos_token) else answer + tokenizer.eos_token
        return _render(tokenizer, prompt + answer)
    return _render(tokenizer, list(prompt) + list(answer))


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def encode_pair(tokenizer, prompt, chosen, rejected) -> tuple[list[int], list[int], list[int]]:
    """(prompt ids, chosen ids, rejected ids), split as TRL's DPOTrainer splits them: the answers start where the
    rendered prompt and both renderings of prompt+answer stop agreeing (usually right after the prompt)."""
    prompt_ids = encode_prompt(tokenizer, prompt)
    full_chosen, full_rejected = _render_answer(tokenizer, prompt, chosen), _render_answer(tokenizer, prompt, rejected)
    cut = min(_common_prefix(prompt_ids, full_chosen), _common_prefix(prompt_ids, full_rejected))
    return prompt_ids[:cut], full_chosen[cut:], full_rejected[cut:]


def truncate(prompt_ids: list[int], completion_ids: list[int], max_length: int | None):
    """TRL's default truncation (keep_start): prompt+completion cut to max_length tokens."""
    if max_length is None or len(prompt_ids) + len(completion_ids) <= max_length:
        return prompt_ids, completion_ids
    return prompt_ids, completion_ids[: max(0, max_length - len(prompt_ids))]
