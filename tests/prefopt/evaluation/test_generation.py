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
    settings = GenerationSettings.from_config(compose_config().eval_generation, max_new_tokens=8, num_samples=None)
    assert (settings.max_prompts, settings.max_new_tokens, settings.num_samples) == (32, 8, 0)
    with pytest.raises(RecipeError, match="max_prompts, max_new_tokens and batch_size must be >= 1"):
        GenerationSettings.from_config({"max_prompts": 0})
    with pytest.raises(RecipeError, match="temperature > 0 when sampling"):
        GenerationSettings.from_config({"num_samples": 2, "temperature": 0.0})
