"""Best-of-N pairs on the tiny random model: prompts, scoring (verifier, reward model, any function), ties, output."""

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from prefopt.data import builtin
from prefopt.data.local import read_pairs
from prefopt.data.pairs import (
    RewardModel,
    best_and_worst,
    builtin_prompts,
    read_prompts,
    sample_pairs,
    verifier_scores,
    write_pairs,
)
from prefopt.errors import RecipeError
from prefopt.models import char_tokenizer, load_model, load_tokenizer
from tests.conftest import compose_config


def build_tiny_reward_model(folder, num_labels=1):
    """A random 1-layer Llama sequence classifier with the char tokenizer, saved like a Hub reward model."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=num_labels,
        pad_token_id=2,
        bos_token_id=1,
        eos_token_id=2,
    )
    LlamaForSequenceClassification(config).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return folder


def by_length(row, answers):
    return [float(len(answer)) for answer in answers]


def test_builtin_prompts_are_distinct_training_prompts_with_every_kind_and_their_verifier_fields():
    rows = builtin_prompts(40, seed=0)
    train_prompts = {t.prompt for t in builtin.split_tasks(0)["train"]}
    assert len({r["prompt"][0]["content"] for r in rows}) == 40
    assert all(r["prompt"][0]["content"] in train_prompts for r in rows)
    assert [r["kind"] for r in rows[:4]] == list(builtin.KINDS)
    capital = next(r for r in rows if r["kind"] == "capital")
    city = capital["answer"]
    assert verifier_scores(capital, [city.lower(), f"The capital is {city}.", "no idea"]) == [1.0, 0.5, 0.0]


def test_prompts_from_a_file_keep_their_fields_and_become_messages(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        json.dumps({"prompt": "Say hi", "id": 7})
        + "\n"
        + json.dumps({"prompt": [{"role": "user", "content": "Say bye"}]})
        + "\n"
    )
    rows = read_prompts(path)
    assert rows == [
        {"prompt": [{"role": "user", "content": "Say hi"}], "id": 7},
        {"prompt": [{"role": "user", "content": "Say bye"}]},
    ]
    assert len(read_prompts(path, num_prompts=1)) == 1
    path.write_text(json.dumps({"question": "x"}) + "\n")
    with pytest.raises(RecipeError, match=r"prompts\.jsonl, line 1: no 'prompt' field \(found question\)"):
        read_prompts(path)
    with pytest.raises(RecipeError, match="built-in verifier scores only built-in prompts.*reward.model="):
        verifier_scores({"prompt": [{"role": "user", "content": "x"}]}, ["a"])


def test_best_is_chosen_worst_is_rejected_and_ties_or_single_answers_give_nothing():
    assert best_and_worst({}, ["ab", "abcd", "", "a"], by_length) == ("abcd", 4.0, "a", 1.0)
    assert best_and_worst({}, ["ab", "cd"], by_length) is None  # a tie
    assert best_and_worst({}, ["ab", "ab", ""], by_length) is None  # one distinct answer


def test_an_answer_cut_off_at_max_new_tokens_can_be_rejected_but_never_chosen():
    assert best_and_worst({}, ["abcd", "ab", "a"], by_length, [False, True, True]) == ("ab", 2.0, "a", 1.0)
    assert best_and_worst({}, ["abcd", "ab", "a"], by_length, [True, False, False]) == ("abcd", 4.0, "a", 1.0)
    assert best_and_worst({}, ["abcd", "a"], by_length, [False, True]) is None  # the finished one is the worst


def test_sample_pairs_end_to_end_on_the_tiny_model_then_read_back_as_local_data(tmp_path):
    cfg = compose_config("model=tiny-random")
    model, tokenizer = load_model(cfg.model, "fp32", seed=0), load_tokenizer(cfg.model)
    prompts = builtin_prompts(6, seed=0)
    # A random model rarely emits its end token, so most answers are cut off: allow those to be chosen here.
    pairs, stats = sample_pairs(
        model,
        tokenizer,
        prompts,
        by_length,
        num_samples=3,
        batch_size=4,
        max_new_tokens=12,
        seed=0,
        require_finished=False,
        progress=False,
    )
    assert stats["prompts"] == 6 and stats["pairs"] + stats["ties"] + stats["too_few_distinct"] == 6
    assert 12 <= stats["unfinished_answers"] <= 18  # a random model ends an answer only by chance
    assert stats["pairs"] >= 3, stats  # random 12-token samples rarely tie in length
    for pair in pairs:
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        assert (pair["chosen_score"], pair["rejected_score"]) == (len(chosen), len(rejected))
        assert len(chosen) > len(rejected) and pair["kind"] in builtin.KINDS
    again, _ = sample_pairs(
        model,
        tokenizer,
        prompts,
        by_length,
        num_samples=3,
        batch_size=4,
        max_new_tokens=12,
        seed=0,
        require_finished=False,
        progress=False,
    )
    assert again == pairs  # the seed fixes the samples

    path = write_pairs(pairs, tmp_path / "out" / "pairs.jsonl")
    rows = read_pairs(path, {})
    assert [r["chosen"] for r in rows] == [p["chosen"] for p in pairs]
    with pytest.raises(RecipeError, match=r"pairs\.jsonl already exists: pass --force"):
        write_pairs(pairs[:1], path)
    write_pairs(pairs[:1], path, force=True)
    assert len(path.read_text().splitlines()) == 1


def test_reward_model_scores_are_its_logit_on_the_rendered_conversation(tmp_path):
    folder = build_tiny_reward_model(tmp_path / "rm")
    reward = RewardModel(str(folder), batch_size=2, device="cpu")
    row = {"prompt": [{"role": "user", "content": "Say hi"}]}
    scores = reward(row, ["hi", "hello there", "no"])
    assert len(set(scores)) == 3
    text = char_tokenizer().apply_chat_template(
        row["prompt"] + [{"role": "assistant", "content": "hello there"}], tokenize=False
    )
    ids = char_tokenizer()(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        direct = reward.model(**ids).logits[0, 0].item()
    assert scores[1] == pytest.approx(direct, abs=1e-5)  # padding in the batch does not change a score
    with pytest.raises(RecipeError, match="has 2 labels; a reward model has one score"):
        RewardModel(str(build_tiny_reward_model(tmp_path / "rm2", num_labels=2)), device="cpu")
