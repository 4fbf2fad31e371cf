"""prefopt/evaluation/runs.py on the tiny random model: a policy equal to its reference scores zero, runs load back
(LoRA adapter or full model), eval.json is never overwritten unforced, and the trainer's metrics stand in for the
pair metrics only where they mean the same."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from omegaconf import open_dict
from peft import LoraConfig, PeftModel, get_peft_model

from prefopt.adapters import lora_config
from prefopt.errors import RecipeError
from prefopt.evaluation.encoding import encode_prompt
from prefopt.evaluation.generation import GenerationSettings
from prefopt.evaluation.models import PolicyAndReference
from prefopt.evaluation.report import format_report
from prefopt.evaluation.runs import evaluate, evaluate_after_training, load_run, pairs_from_trainer_metrics, write_eval
from prefopt.models import load_model
from prefopt.recipe import load_recipe
from prefopt.run_files import save_config
from tests.conftest import compose_config
from tests.prefopt.evaluation.conftest import SMALL, perturb
from tests.prefopt.test_adapters import save_sft_adapter


def test_a_policy_equal_to_its_reference_scores_zero(tokenizer):
    cfg = compose_config(
        *SMALL, "eval_generation.max_prompts=8", "eval_generation.max_new_tokens=6", "eval_generation.num_samples=2"
    )
    base = load_model(cfg.model, "fp32", seed=cfg.train.seed)
    policy = get_peft_model(base, lora_config(cfg.peft))  # LoRA B starts at zero: policy == reference
    settings = GenerationSettings.from_config(cfg.eval_generation)
    result = evaluate(cfg, PolicyAndReference(policy), tokenizer, settings)
    pairs, gen = result["pairs"], result["generation"]
    assert pairs["loss"] == pytest.approx(math.log(2), abs=1e-6) and pairs["reward_accuracy"] == 0.0
    assert pairs["reward_margin"] == pytest.approx(0.0, abs=1e-6) and pairs["num_pairs"] == 16
    assert gen["num_prompts"] == 8 and gen["kl_policy_reference"] == pytest.approx(0.0, abs=1e-5)
    assert gen["ties"] == 8 and gen["win_rate"] == 0.5
    assert gen["pass_rate"]["policy"] == gen["pass_rate"]["reference"]
    assert [s["policy_answer"] for s in gen["samples"]] == [s["reference_answer"] for s in gen["samples"]]
    # Every pair and answer scores the same, so the standard errors over them are zero; each sample keeps its own
    # verdicts and KL, which average to the rates and the KL.
    assert pairs["loss_se"] == pytest.approx(0.0, abs=1e-6) and pairs["reward_margin_se"] == pytest.approx(
        0.0, abs=1e-6
    )
    assert gen["kl_policy_reference_se"] == pytest.approx(0.0, abs=1e-5)
    assert sum(s["kl"] for s in gen["samples"]) / 8 == pytest.approx(gen["kl_policy_reference"])
    content = [s["policy_right_content"] for s in gen["samples"]]
    assert sum(content) / 8 == gen["right_content_rate"]["policy"]
    assert content == [s["reference_right_content"] for s in gen["samples"]]
    assert gen["sampled"]["num_prompts"] == 16 and gen["sampled"]["temperature"] == 1.0
    assert gen["sampled"]["kl_policy_reference_se"] == pytest.approx(0.0, abs=1e-5)
    report = format_report(result)
    assert "reward accuracy (16 pairs)" in report and "pass rate (8 prompts, greedy)" in report


def save_run_config(cfg, run_dir):
    """config.yaml as the launcher writes it: the job's config, without Hydra's own node."""
    with open_dict(cfg):
        del cfg["hydra"]
    save_config(cfg, run_dir)


def fake_lora_run(run_dir, *overrides):
    """A run directory as train.py leaves it (config.yaml + model/ adapter), with LoRA weights moved off zero."""
    cfg = compose_config(*SMALL, *overrides)
    run_dir.mkdir(parents=True)
    save_run_config(cfg, run_dir)
    base = load_model(cfg.model, "fp32", seed=cfg.train.seed)
    policy = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    policy.save_pretrained(str(run_dir / "model"))
    return policy


def test_load_run_restores_the_lora_policy_and_its_reference(tmp_path):
    saved = fake_lora_run(tmp_path / "run")
    cfg, tokenizer, models = load_run(tmp_path / "run")
    ids = torch.tensor([encode_prompt(tokenizer, [{"role": "user", "content": "What is 2 + 3?"}])])
    with torch.no_grad():
        policy_logits = models.policy(ids).logits
        torch.testing.assert_close(policy_logits, saved(ids).logits)
        with models.reference_model() as reference, saved.disable_adapter():
            reference_logits = reference(ids).logits
            torch.testing.assert_close(reference_logits, saved(ids).logits)
    assert not torch.allclose(policy_logits, reference_logits)  # the adapter is on for the policy only
    assert cfg.model.name == "tiny-random" and models.reference is None


def test_load_run_restores_a_full_model_and_loads_the_base_again(tmp_path):
    cfg = compose_config(*SMALL, "peft=none")
    (tmp_path / "run").mkdir()
    save_run_config(cfg, tmp_path / "run")
    trained = perturb(load_model(cfg.model, "fp32", seed=cfg.train.seed), 0.05)
    trained.save_pretrained(str(tmp_path / "run" / "model"))
    _, _, models = load_run(tmp_path / "run")
    base = load_model(cfg.model, "fp32", seed=cfg.train.seed)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(models.policy(ids).logits, trained(ids).logits)
        torch.testing.assert_close(models.reference(ids).logits, base(ids).logits)


def test_load_run_measures_an_sft_adapter_run_against_base_plus_that_adapter(tmp_path):
    adapter = save_sft_adapter(tmp_path / "sft")
    saved = fake_lora_run(tmp_path / "run", "ref=sft_adapter", f"ref.adapter_path={adapter}")
    _, _, models = load_run(tmp_path / "run")
    cfg = compose_config(*SMALL)
    sft = PeftModel.from_pretrained(load_model(cfg.model, "fp32", seed=cfg.train.seed), str(adapter))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(models.reference(ids).logits, sft(ids).logits)
        assert not torch.allclose(models.reference(ids).logits, saved(ids).logits)


def test_load_run_says_what_is_missing(tmp_path):
    with pytest.raises(RecipeError, match="not a run directory: no config.yaml"):
        load_run(tmp_path)
    save_run_config(compose_config(*SMALL), tmp_path)
    with pytest.raises(RecipeError, match="has no model/: the run did not finish training"):
        load_run(tmp_path)


def test_a_forced_rewrite_keeps_the_harness_section(tmp_path):
    write_eval(tmp_path, {"first": 1, "harness": {"sums": {"acc": 0.5}}})
    write_eval(tmp_path, {"second": 2}, force=True)
    assert json.loads((tmp_path / "eval.json").read_text()) == {"second": 2, "harness": {"sums": {"acc": 0.5}}}


def test_eval_json_is_never_overwritten_without_force(tmp_path):
    write_eval(tmp_path, {"first": 1})
    with pytest.raises(RecipeError, match="eval.json exists: pass --force"):
        write_eval(tmp_path, {"second": 2})
    assert json.loads((tmp_path / "eval.json").read_text()) == {"first": 1}
    write_eval(tmp_path, {"second": 2}, force=True)
    assert json.loads((tmp_path / "eval.json").read_text()) == {"second": 2}


def test_trainer_metrics_stand_in_for_pair_metrics_only_where_they_mean_the_same():
    metrics = {
        "eval_loss": 0.4,
        "eval_rewards/accuracies": 0.9,
        "eval_rewards/margins": 1.2,
        "eval_rewards/chosen": 0.1,
        "eval_rewards/rejected": -1.1,
        "eval_logps/chosen": -9.0,
        "eval_logps/rejected": -30.0,
    }

    def pairs(*overrides):
        cfg = compose_config(*SMALL, *overrides)
        return pairs_from_trainer_metrics(cfg, load_recipe(cfg.method.recipe), metrics)

    plain = pairs("method.loss_type=[sigmoid]")
    assert plain["reward_accuracy"] == 0.9 and plain["loss"] == 0.4 and plain["num_pairs"] == 16
    assert pairs()["loss"] is None and pairs()["reward_accuracy"] == 0.9  # the default's SFT term is in eval_loss
    assert pairs("method=kto") is None  # other definitions
    assert pairs("method=orpo") is None


def test_nothing_is_loaded_or_written_when_evaluation_is_off(tmp_path):
    cfg = compose_config(*SMALL, "eval_generation.enabled=false")
    recipe = load_recipe(cfg.method.recipe)
    # trainer=None: it would fail at the first use, as would loading a reference for it.
    run = SimpleNamespace(cfg=cfg, recipe=recipe, trainer=None, run_dir=tmp_path, setup=None, models=None)
    assert evaluate_after_training(run) is None
    assert not (tmp_path / "eval.json").exists()
