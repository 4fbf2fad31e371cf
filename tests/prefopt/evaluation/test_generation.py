"""prefopt/evaluation/generation.py on the tiny random model: left padding changes no answer, the kept log-probs
equal a forward pass, sampling is reproducible, and the settings come from the config then the command line."""

import pytest
import torch

from prefopt.errors import RecipeError
from prefopt.evaluation.encoding import encode_prompt
from prefopt.evaluation.generation import GenerationSettings, generate
from prefopt.evaluation.logprobs import sequence_logps
from prefopt.evaluation.scoring import heldout_tasks
from prefopt.models import load_model
from tests.conftest import compose_config
from tests.prefopt.evaluation.conftest import SMALL, perturb


@pytest.fixture(scope="module")
def prompts(tokenizer):
    tasks = heldout_tasks(compose_config(*SMALL).dataset, 32)
    return tasks, [encode_prompt(tokenizer, [{"role": "user", "content": t.prompt}]) for t in tasks]


def test_left_padded_generation_matches_one_prompt_at_a_time(tokenizer, prompts):
    prompt_ids = prompts[1][:6]
    assert len({len(p) for p in prompt_ids}) > 1  # the batch really is left-padded
    model = perturb(load_model(compose_config(*SMALL).model, "fp32", seed=42), 0.3)
    batched = generate(model, tokenizer, prompt_ids, max_new_tokens=8, batch_size=16)
    alone = [generate(model, tokenizer, [p], max_new_tokens=8, batch_size=1).ids[0] for p in prompt_ids]
    assert len({tuple(a) for a in batched.ids}) > 3  # varied answers, not one token repeated
    assert batched.ids == alone
    assert all(len(a) <= 8 for a in batched.ids)
    # The log-probs kept from generation equal a fresh forward pass over prompt + answer.
    forward = sequence_logps(model, list(zip(prompt_ids, batched.ids)), 16, tokenizer.pad_token_id)
    torch.testing.assert_close(torch.tensor(batched.logps, dtype=torch.float64), forward, rtol=1e-5, atol=1e-4)


def test_sampling_gives_n_answers_per_prompt_reproducibly(tokenizer, prompts):
    _, prompt_ids = prompts
    model = load_model(compose_config(*SMALL).model, "fp32", seed=42)
    draws = []
    for _ in range(2):
        torch.manual_seed(3)
        draws.append(generate(model, tokenizer, prompt_ids[:3], max_new_tokens=6, batch_size=8, num_samples=4))
    assert len(draws[0].ids) == 12 and draws[0].ids == draws[1].ids
    assert len({tuple(a) for a in draws[0].ids}) > 1


def test_generation_settings_come_from_the_config_then_the_command_line():
    section = compose_config().eval_generation
    settings = GenerationSettings.from_config(section, max_new_tokens=8, num_samples=None)
    assert (settings.max_prompts, settings.max_new_tokens, settings.num_samples) == (section.max_prompts, 8, 0)
    with pytest.raises(RecipeError, match="max_prompts, max_new_tokens and batch_size must be >= 1"):
        GenerationSettings.from_config({"max_prompts": 0})
    with pytest.raises(RecipeError, match="temperature > 0 when sampling"):
        GenerationSettings.from_config({"num_samples": 2, "temperature": 0.0})


def test_batches_that_split_prompts_and_share_a_prefix_give_each_prompt_its_own_greedy_answer(tokenizer, prompts):
    """Rows of several prompts in one batch (their shared chat-template prefix computed once, the rest
    left-padded), batches smaller than the prompt list: the same token ids as each prompt generated alone."""
    _, prompt_ids = prompts
    prompt_ids = prompt_ids[:7]
    model = perturb(load_model(compose_config(*SMALL).model, "fp32", seed=42), 0.3)
    alone = [generate(model, tokenizer, [p], max_new_tokens=10, batch_size=1) for p in prompt_ids]
    for batch_size in (3, 32):
        batched = generate(model, tokenizer, prompt_ids, max_new_tokens=10, batch_size=batch_size)
        assert batched.ids == [a.ids[0] for a in alone], batch_size
        assert batched.finished == [a.finished[0] for a in alone]
        torch.testing.assert_close(batched.logps, [a.logps[0] for a in alone], rtol=1e-5, atol=1e-4)
    assert len({tuple(a.ids[0]) for a in alone}) > 3  # varied answers: a broken row mapping would show
    stop = tokenizer.eos_token_id
    for answer in batched.ids:
        assert stop not in answer[:-1]  # an answer ends at its first stop token
    assert batched.finished == [a[-1] == stop for a in batched.ids]


def test_samples_of_a_prompt_split_across_batches_stay_with_their_prompt(tokenizer, prompts):
    """At a temperature near 0 a sample is the greedy answer: rows of a prompt in two batches (3 samples, batches of
    4 rows) each continue their own prompt."""
    _, prompt_ids = prompts
    model = perturb(load_model(compose_config(*SMALL).model, "fp32", seed=42), 0.3)
    greedy = generate(model, tokenizer, prompt_ids[:4], max_new_tokens=8, batch_size=8).ids
    cold = generate(model, tokenizer, prompt_ids[:4], max_new_tokens=8, batch_size=4, num_samples=3, temperature=1e-4)
    assert cold.ids == [answer for answer in greedy for _ in range(3)]
    assert generate(model, tokenizer, prompt_ids[:2], max_new_tokens=4, batch_size=4, logps=False).logps == []


@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.95])
def test_the_nucleus_holds_the_tokens_transformers_top_p_keeps(top_p):
    from transformers.generation.logits_process import TopPLogitsWarper

    from prefopt.evaluation.generation import _nucleus

    logits = torch.randn(6, 500, generator=torch.Generator().manual_seed(1)) * 2
    hf_kept = TopPLogitsWarper(top_p)(None, logits.clone()) > float("-inf")
    probs, order = torch.softmax(logits, -1).sort(-1, descending=True)
    ours = torch.zeros_like(hf_kept).scatter(-1, order, _nucleus(probs, top_p) > 0)
    assert torch.equal(ours, hf_kept)


def test_sampling_draws_only_nucleus_tokens_in_proportion_whether_the_nucleus_is_narrow_or_wide():
    from prefopt.evaluation.generation import _sampler

    torch.manual_seed(0)
    vocab = 6000  # wider than the first candidate tier, so a flat row takes the wider look-ups
    peaked = torch.full((vocab,), -20.0)
    peaked[:3] = torch.tensor([2.0, 1.0, 0.0])
    flat = torch.zeros(vocab)
    logits = torch.stack([peaked, flat] * 2000)
    draws = _sampler(True, 1.0, 0.9)(logits)
    narrow, wide = draws[0::2], draws[1::2]
    assert set(narrow.tolist()) <= {0, 1}  # tokens 0 and 1 hold 0.91 of the mass: 2 is outside the nucleus
    p0 = 2.718281828 / (2.718281828 + 1.0)  # token 0's share within {0, 1}
    assert abs((narrow == 0).float().mean().item() - p0) < 0.04
    assert len(set(wide.tolist())) > 1000 and wide.max().item() < vocab  # a flat nucleus spans the vocabulary
    greedy = _sampler(False, 1.0, 1.0)(logits[:2])
    assert greedy.tolist() == [0, 0]
