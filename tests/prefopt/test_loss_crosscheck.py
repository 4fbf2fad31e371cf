"""The losses TRL trains with, recomputed here from the papers' formulas on the same collated batch and tiny model.

Log-probabilities come from a plain forward pass (log_softmax of the logits), not from TRL's fused LM head, so a
mistake in either path shows. Conventions, checked against the installed TRL 1.16 source:
- DPO (Rafailov et al. 2023): sequence log-probs summed over completion tokens;
  loss = -log sigmoid(beta * [(log pi_c - log ref_c) - (log pi_r - log ref_r)]).
- IPO (Azar et al. 2023, eq. 17): loss = (h - 1/(2 tau))^2 with h the difference of log-ratios. The paper writes
  sequence log-probs; TRL divides each side's log-ratio by its completion length (a per-token average), a choice
  its source says the IPO authors confirmed. We match TRL and assert that the summed form gives another number.
- ORPO (Hong et al. 2024): log-probs averaged per completion token; log odds(y) = log p - log(1 - p);
  loss = NLL(chosen) - lambda * log sigmoid(log odds_c - log odds_r). The paper's NLL covers the chosen answer's
  tokens; TRL's covers prompt and answer (every non-padding token). We match TRL and assert the difference.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from prefopt.data import load_splits
from prefopt.models import load_model, load_tokenizer
from prefopt.run import trl_config
from recipes import dpo, orpo
from tests.conftest import compose_config

RTOL = 1e-4
SMALL = [
    "model=tiny-random",
    "logger=none",
    "dataset.num_train=8",
    "dataset.num_eval=8",
    "peft=none",
    "train.per_device_eval_batch_size=8",
]


def token_logps(model, input_ids, attention_mask):
    """log p(token t | tokens < t) for t >= 1, from a plain forward pass."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def perturbed_copy(cfg, scale=0.05):
    """A policy that differs from the reference, so that every log-ratio is non-zero."""
    model = load_model(cfg.model, "fp32", seed=cfg.train.seed)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return model


def dpo_trainer(*overrides):
    cfg = compose_config("method=dpo", *SMALL, *(overrides or ["method.loss_type=[sigmoid]"]))  # plain DPO unless told
    train, held_out = load_splits(cfg.dataset, "paired")
    trainer = dpo.build_trainer(
        cfg,
        args=trl_config(cfg),
        model=perturbed_copy(cfg),
        ref_model=load_model(cfg.model, "fp32", seed=cfg.train.seed),
        tokenizer=load_tokenizer(cfg.model),
        train_dataset=train,
        eval_dataset=held_out,
        peft_config=None,
        callbacks=[],
    )
    trainer.model.eval()  # dropout off
    batch = trainer._prepare_inputs(next(iter(trainer.get_eval_dataloader())))
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch).item()
        mask = batch["completion_mask"][:, 1:].float()
        policy = token_logps(trainer.model, batch["input_ids"], batch["attention_mask"])
        reference = token_logps(trainer.ref_model, batch["input_ids"], batch["attention_mask"])
    return cfg, trainer, trl_loss, policy, reference, mask


def halves(tensor):
    return tensor.chunk(2, dim=0)  # TRL's batch is [chosen rows, rejected rows]


def test_dpo_sigmoid_loss_and_rewards_match_trl():
    cfg, trainer, trl_loss, policy, reference, mask = dpo_trainer()
    (pc, pr), (rc, rr) = halves((policy * mask).sum(1)), halves((reference * mask).sum(1))
    beta = cfg.method.beta
    ours = -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean().item()
    assert abs(ours - math.log(2)) > 1e-3  # the policy really differs from the reference
    assert ours == pytest.approx(trl_loss, rel=RTOL)
    logged = trainer._metrics["eval"]
    assert logged["rewards/chosen"][-1] == pytest.approx((beta * (pc - rc)).mean().item(), rel=RTOL)
    assert logged["rewards/rejected"][-1] == pytest.approx((beta * (pr - rr)).mean().item(), rel=RTOL)


def test_dpo_plus_sft_adds_the_token_mean_nll_of_chosen():
    cfg, _, trl_loss, policy, reference, mask = dpo_trainer("method.loss_type=[sigmoid,sft]")
    (pc, pr), (rc, rr) = halves((policy * mask).sum(1)), halves((reference * mask).sum(1))
    dpo_loss = -F.logsigmoid(cfg.method.beta * ((pc - rc) - (pr - rr))).mean()
    chosen_tokens, chosen_mask = halves(policy)[0], halves(mask)[0]
    sft_loss = -(chosen_tokens * chosen_mask).sum() / chosen_mask.sum()
    assert (dpo_loss + sft_loss).item() == pytest.approx(trl_loss, rel=RTOL)


def test_ipo_loss_uses_length_normalized_log_ratios_like_trl():
    # plain IPO: train-ipo's default adds an SFT term
    cfg, _, trl_loss, policy, reference, mask = dpo_trainer(
        "method=ipo", "method.loss_type=[ipo]", "method.loss_weights=null"
    )
    tau = cfg.method.beta
    ratios = ((policy - reference) * mask).sum(1)
    lengths = mask.sum(1)
    (chosen, rejected), (len_c, len_r) = halves(ratios), halves(lengths)
    h = chosen / len_c - rejected / len_r
    ours = ((h - 1 / (2 * tau)) ** 2).mean().item()
    assert ours == pytest.approx(trl_loss, rel=RTOL)
    summed = (((chosen - rejected) - 1 / (2 * tau)) ** 2).mean().item()
    assert summed != pytest.approx(trl_loss, rel=1e-2)  # the convention matters for this batch


@pytest.mark.parametrize("completion_only_loss", [False, True])  # TRL's SFT term, and the default's: answers only
def test_orpo_loss_matches_trl(completion_only_loss):
    cfg = compose_config("method=orpo", *SMALL, f"method.completion_only_loss={completion_only_loss}")
    train, held_out = load_splits(cfg.dataset, "paired")
    model = load_model(cfg.model, "fp32", seed=cfg.train.seed)
    trainer = orpo.build_trainer(
        cfg,
        args=trl_config(cfg),
        model=model,
        ref_model=None,
        tokenizer=load_tokenizer(cfg.model),
        train_dataset=train,
        eval_dataset=held_out,
        peft_config=None,
        callbacks=[],
    )
    trainer.model.eval()
    batch = trainer._prepare_inputs(next(iter(trainer.get_eval_dataloader())))
    with torch.no_grad():
        trl_loss, trl_metrics = trainer.get_batch_loss_metrics(trainer.model, batch, train_eval="eval")
        sides = {}
        for side in ("chosen", "rejected"):
            logps = token_logps(model, batch[f"{side}_input_ids"], batch[f"{side}_attention_mask"])
            answer = (batch[f"{side}_labels"][:, 1:] != -100).float()
            sides[side] = (logps, answer, (logps * answer).sum(1) / answer.sum(1))
    (chosen_tokens, chosen_answer, lc), (_, _, lr) = sides["chosen"], sides["rejected"]
    log_odds = (lc - lr) - (torch.log1p(-torch.exp(lc)) - torch.log1p(-torch.exp(lr)))
    real_tokens = batch["chosen_attention_mask"][:, 1:].float()  # prompt and answer: TRL's NLL span
    span = chosen_answer if completion_only_loss else real_tokens
    nll = -(chosen_tokens * span).sum() / span.sum()
    ours = (nll - cfg.method.beta * F.logsigmoid(log_odds).mean()).item()
    assert ours == pytest.approx(trl_loss.item(), rel=RTOL)
    assert trl_metrics["eval_log_odds_ratio"] == pytest.approx(F.logsigmoid(log_odds).mean().item(), rel=RTOL)
    other_span = real_tokens if completion_only_loss else chosen_answer  # the paper's formula: the answer's tokens
    other_nll = -(chosen_tokens * other_span).sum() / other_span.sum()
    other = (other_nll - cfg.method.beta * F.logsigmoid(log_odds).mean()).item()
    # A random model's per-token NLL is nearly uniform, so the two spans differ little, yet 5x beyond the tolerance.
    assert abs(other - trl_loss.item()) > 5 * RTOL * abs(trl_loss.item())
