"""prefopt.trainers_experimental: FastORPOTrainer and FastCPOTrainer (CPO, SimPO) give the loss, every logged metric
and the gradients of TRL's own trainers, from shared-prompt rows and an LM head on the scored tokens only."""

import functools

import pytest
import torch
from trl.experimental.cpo import CPOTrainer
from trl.experimental.orpo import ORPOTrainer

from prefopt import shared_prompt
from prefopt.data import load_splits
from prefopt.models import load_model, load_tokenizer
from prefopt.run import trl_config
from prefopt.trainers_experimental import FastCPOTrainer, FastORPOTrainer
from recipes import cpo, orpo
from tests.conftest import compose_config
from tests.prefopt.trainer_steps import assert_same_step, one_step

TINY = ["model=tiny-random", "logger=none", "dataset.num_train=16", "dataset.num_eval=8"]
TRAINERS = {"orpo": (ORPOTrainer, FastORPOTrainer, orpo.RECIPE), "cpo": (CPOTrainer, FastCPOTrainer, cpo.RECIPE)}
TRAINERS["simpo"] = TRAINERS["cpo"]


@pytest.mark.parametrize("method", ["orpo", "cpo", "simpo"])
@pytest.mark.parametrize(("attention", "batch"), [("sdpa", 8), ("eager", 2)])
def test_recipe_trainer_gives_trls_loss_metrics_and_gradients(
    method, attention, batch, backbone_row_shapes, monkeypatch
):
    cfg = compose_config(
        f"method={method}",
        *TINY,
        "+train.train_sampling_strategy=sequential",
        f"train.per_device_train_batch_size={batch}",
    )
    trl_class, fast_class, recipe = TRAINERS[method]
    train, _ = load_splits(cfg.dataset, "paired")
    lm_head_inputs = []
    trls = one_step(trl_class, cfg, train, recipe, attention, lm_head_inputs)
    assert not backbone_row_shapes and [len(shape) for shape in lm_head_inputs] == [3]  # TRL: every position
    lm_head_inputs.clear()
    query_passes, forward_queries = [], shared_prompt._forward_queries_without_gradient
    monkeypatch.setattr(
        shared_prompt,
        "_forward_queries_without_gradient",
        lambda *args: query_passes.append(1) or forward_queries(*args),
    )
    ours = one_step(fast_class, cfg, train, recipe, attention, lm_head_inputs)
    # One row per pair (8 tiny-model pairs are too long to pack) with TRL's padding computed in it, or one packed
    # row whose padding queries go through the model after the rest, without gradient.
    assert [shape[0] for shape in backbone_row_shapes] == [batch if batch == 8 else 1]
    assert len(query_passes) == (batch == 2)
    assert [len(shape) for shape in lm_head_inputs] == [2]  # the scored tokens only
    assert_same_step(ours, trls)
    expected = {"nll_loss", "logits/chosen", "logits/rejected"} | ({"log_odds_ratio"} if method == "orpo" else set())
    assert expected <= ours[1].keys()


def test_orpo_completion_only_loss_takes_the_sft_term_over_the_answers_only():
    """TRL's CPO takes its SFT term over the chosen answers only: ORPO with completion_only_loss gives the same one,
    and the same odds-ratio term as TRL's ORPO."""
    cfg = compose_config("method=orpo", *TINY, "+train.train_sampling_strategy=sequential")
    train, _ = load_splits(cfg.dataset, "paired")
    trl_loss, trl_metrics, _ = one_step(ORPOTrainer, cfg, train, orpo.RECIPE)
    answers_only = functools.partial(FastORPOTrainer, completion_only_loss=True)
    loss, metrics, _ = one_step(answers_only, cfg, train, orpo.RECIPE)
    cpo_cfg = compose_config("method=cpo", *TINY, "+train.train_sampling_strategy=sequential")
    _, cpo_metrics, _ = one_step(CPOTrainer, cpo_cfg, train, cpo.RECIPE)
    assert metrics["nll_loss"] == pytest.approx(cpo_metrics["nll_loss"], rel=1e-4)
    assert metrics["nll_loss"] != pytest.approx(trl_metrics["nll_loss"], rel=1e-5)  # a random model: near ln V both
    for key in ("log_odds_ratio", "log_odds_chosen", "rewards/chosen", "rewards/rejected", "rewards/margins"):
        assert metrics[key] == pytest.approx(trl_metrics[key], rel=1e-4), key
    odds_ratio_term = trl_loss - trl_metrics["nll_loss"]
    assert loss - metrics["nll_loss"] == pytest.approx(odds_ratio_term, rel=1e-4, abs=1e-6)


def test_the_batches_compared_have_padding_and_answers_of_different_lengths():
    """What makes the logits/* metrics above a real check: TRL averages them over padding positions too."""
    cfg = compose_config("method=orpo", *TINY, "+train.train_sampling_strategy=sequential")
    train, _ = load_splits(cfg.dataset, "paired")
    trainer = FastORPOTrainer(
        model=load_model(cfg.model, "fp32", seed=0),
        args=trl_config(cfg),
        train_dataset=train,
        processing_class=load_tokenizer(cfg.model),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    rows = trainer.concatenated_inputs(batch, padding_value=trainer.padding_value)
    padding = rows["concatenated_attention_mask"] == 0
    assert 0.1 < padding.float().mean() < 0.9
    lengths = rows["concatenated_attention_mask"].sum(1)
    assert not torch.equal(lengths[:8], lengths[8:])


def test_share_prompt_false_keeps_trls_layout(backbone_row_shapes):
    cfg = compose_config("method=orpo", *TINY, "method.share_prompt=false")
    train, _ = load_splits(cfg.dataset, "paired")
    trainer = orpo.build_trainer(
        cfg,
        args=trl_config(cfg),
        model=load_model(cfg.model, "fp32"),
        ref_model=None,
        tokenizer=load_tokenizer(cfg.model),
        train_dataset=train,
        eval_dataset=None,
        peft_config=None,
        callbacks=[],
    )
    assert trainer.share_prompt is False and trainer.scoring_head
    trainer.compute_loss(trainer.model, trainer._prepare_inputs(next(iter(trainer.get_train_dataloader()))))
    assert backbone_row_shapes == []


def test_a_model_that_cannot_take_the_mask_keeps_trls_layout_and_says_so(caplog, backbone_row_shapes):
    cfg = compose_config("method=orpo", *TINY)
    train, _ = load_splits(cfg.dataset, "paired")
    model = load_model(cfg.model, "fp32")
    model.config.sliding_window = 4  # sliding-window attention: a custom mask would ignore the window
    with caplog.at_level("INFO", logger="prefopt.trainers_experimental"):
        trainer = FastORPOTrainer(
            model=model,
            args=trl_config(cfg),
            train_dataset=train,
            processing_class=load_tokenizer(cfg.model),
        )
    assert trainer.share_prompt is False and trainer.scoring_head
    assert [r.message for r in caplog.records if "share_prompt" in r.message] == [
        "share_prompt: off for this model (its attention takes no custom mask), TRL's layout is used"
    ]
    trainer.compute_loss(trainer.model, trainer._prepare_inputs(next(iter(trainer.get_train_dataloader()))))
    assert backbone_row_shapes == []
