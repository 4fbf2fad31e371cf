"""Token-boundary and truncation checks, measured the way TRL tokenizes, and identical pairs on the Hub path too."""

import json
import logging

import pytest
from datasets import Dataset
from omegaconf import OmegaConf

from prefopt.data import builtin, load_splits, to_unpaired
from prefopt.data.checks import boundaries, check_prompt_prefix, drop_unusable, measure
from prefopt.errors import RecipeError
from prefopt.models import char_tokenizer, load_tokenizer
from tests.conftest import compose_config


def _builtin_rows(n=64):
    pairs = builtin.build_pairs(n, 16, seed=0)
    return Dataset.from_list(pairs["train"] + pairs["test"]).select_columns(["prompt", "chosen", "rejected"])


def _merging_tokenizer():
    """A BPE tokenizer that merges "a" + "b" into one token: prompt "a" + completion "b" is not a prefix."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"a": 0, "b": 1, "ab": 2, "<eos>": 3}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b")]))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<eos>")


def test_builtin_data_keeps_the_prompt_a_token_prefix_with_the_char_tokenizer():
    rows = _builtin_rows()
    tokenizer = char_tokenizer()
    assert check_prompt_prefix(rows, tokenizer) == []
    assert check_prompt_prefix(to_unpaired(rows), tokenizer) == []


@pytest.mark.slow
def test_builtin_data_keeps_the_prompt_a_token_prefix_with_smollm2():
    tokenizer = load_tokenizer(compose_config("model=smollm2-135m").model)
    assert check_prompt_prefix(_builtin_rows(), tokenizer) == []


def test_the_checker_catches_tokens_merging_across_the_boundary():
    rows = [{"prompt": "a", "chosen": "b", "rejected": "a"}, {"prompt": "b", "chosen": "a", "rejected": "b"}]
    tokenizer = _merging_tokenizer()
    (merged, clean) = boundaries(tokenizer, ["a", "b"], ["b", "a"])
    assert (merged.prompt_ids, merged.full_ids, merged.ok) == ([0], [2, 3], False)
    assert (clean.prompt_ids, clean.full_ids, clean.ok) == ([1], [1, 0, 3], True)
    assert check_prompt_prefix(rows, tokenizer) == [0]


def test_the_checker_catches_a_template_that_renders_the_prompt_differently():
    tokenizer = char_tokenizer()
    # Generation prompt "<|im_start|>assistant\n", but past assistant turns are rendered as "<|im_start|>bot\n".
    tokenizer.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + ('bot' if m['role'] == 'assistant' else m['role']) + '\n' "
        "+ m['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    lengths = measure(_builtin_rows(8), tokenizer)
    assert lengths.mismatched == list(range(24))
    assert lengths.cut_off[0] == "assistant\n"  # what TRL would silently leave out of the prompt


def test_lengths_are_counted_as_trl_counts_them():
    """Char tokenizer: 1 character = 1 token; ChatML adds 19 tokens to a one-turn prompt and 2 to an answer."""
    rows = [
        {
            "prompt": [{"role": "user", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": "yes"}],
            "rejected": [{"role": "assistant", "content": "no"}],
        },
        {"prompt": "abc", "chosen": "xy", "rejected": "z"},
    ]
    chat = measure(rows[:1], char_tokenizer())
    assert (chat.prompt, chat.completions) == ([21], {"chosen": [5], "rejected": [4]})
    plain = measure(rows[1:], char_tokenizer())  # plain text: the EOS token is appended to each completion
    assert (plain.prompt, plain.completions) == ([3], {"chosen": [3], "rejected": [2]})


def test_rows_whose_prompt_fills_max_length_are_dropped_and_counted(caplog):
    rows = [{"prompt": "p" * n, "chosen": "c", "rejected": "r"} for n in (3, 9, 10, 30)]
    train, test = Dataset.from_list(rows), Dataset.from_list(rows[:2])
    with caplog.at_level(logging.WARNING):
        kept_train, kept_test = drop_unusable(train, test, char_tokenizer(), max_length=10)
    assert [len(p) for p in kept_train["prompt"]] == [3, 9]
    assert len(kept_test) == 2
    assert "train: dropped 2 of 4 rows whose prompt alone fills train.max_length=10" in caplog.text
    assert "eval: dropped" not in caplog.text
    with pytest.raises(
        RecipeError, match=r"train: every prompt is at least train.max_length=2 tokens long \(longest 30\)"
    ):
        drop_unusable(train, test, char_tokenizer(), max_length=2)
    assert len(drop_unusable(train, test, char_tokenizer(), max_length=None)[0]) == 4


def test_boundary_mismatches_are_logged_with_a_count_before_training(caplog):
    rows = Dataset.from_list(
        [{"prompt": "a", "chosen": "b", "rejected": "a"}, {"prompt": "b", "chosen": "a", "rejected": "b"}]
    )
    with caplog.at_level(logging.WARNING):
        drop_unusable(rows, rows, _merging_tokenizer(), max_length=None)
    assert "train: in 1 of 2 rows the tokenized prompt is not a prefix" in caplog.text


def test_identical_hub_pairs_are_dropped_too(tmp_path, caplog):
    same = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.", "rejected": "\n\nHuman: Hi\n\nAssistant: Hello."}
    good = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.", "rejected": "\n\nHuman: Hi\n\nAssistant: No."}
    path = tmp_path / "hh.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in [same] + [good] * 19))
    cfg = OmegaConf.create(
        {
            "name": "hh-rlhf",
            "format": "hh-rlhf",
            "path": str(path),
            "data_dir": None,
            "train_split": "train",
            "eval_split": "train",
            "max_train_samples": None,
            "max_eval_samples": None,
            "max_dropped_fraction": 0.1,
        }
    )
    with caplog.at_level(logging.WARNING):
        train, _ = load_splits(cfg, "paired")
    assert len(train) == 19 and "dropped 1 of 20 rows whose chosen is identical" in caplog.text
    cfg.max_dropped_fraction = 0.01
    with pytest.raises(
        RecipeError, match=r"hh\.jsonl, split 'train'\): chosen is identical to rejected in 1 of 20 rows"
    ):
        load_splits(cfg, "paired")
