"""Did training help? Implicit-reward metrics on held-out pairs, and answers scored by the built-in task's verifier.

Both compare the trained policy with its reference (the base model: LoRA adapter disabled, or loaded again).
`scripts/evaluate.py` runs it on a finished run directory; `scripts/train.py` runs it after training
(`eval_generation:` in conf/train.yaml). Results go to `<run dir>/eval.json`.

Sequences are tokenized as TRL's DPOTrainer does: the prompt rendered with the chat template and
add_generation_prompt=True, the completion being the rendering of prompt+answer after that prompt prefix.
A sequence's log-probability is the sum over its completion tokens.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from prefopt.data import builtin
from prefopt.errors import RecipeError
from prefopt.run_files import METRICS_FILE, write_json

log = logging.getLogger(__name__)

EVAL_FILE = "eval.json"


# ---------------------------------------------------------------------------------------------- the two models


@dataclass
class PolicyAndReference:
    """The trained policy and what it is measured against."""

    policy: torch.nn.Module
    reference: torch.nn.Module | None = None  # None: the policy itself with its LoRA adapter disabled

    @contextmanager
    def reference_model(self) -> Iterator[torch.nn.Module]:
        if self.reference is not None:
            yield self.reference
            return
        if not hasattr(self.policy, "disable_adapter"):
            raise RecipeError("no reference model: the policy has no LoRA adapter to disable and none was loaded.")
        with self.policy.disable_adapter():
            yield self.policy


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


# ------------------------------------------------------------------------------ tokenization, as TRL's DPOTrainer


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


# ----------------------------------------------------------------------------------------------- log-probs


@torch.no_grad()
def sequence_logps(
    model: torch.nn.Module, sequences: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int
) -> torch.Tensor:
    """Sum of log p(token) over each (prompt, completion)'s completion tokens, in float32 (float64 result)."""
    model.eval()
    device = _device(model)
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
        logits = model(input_ids=ids, attention_mask=attention, use_cache=False).logits[:, :-1].float()
        token_logps = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        sums.append((token_logps * completion[:, 1:]).sum(dim=1).double().cpu())
    return torch.cat(sums) if sums else torch.zeros(0, dtype=torch.float64)


def _truncate(prompt_ids: list[int], completion_ids: list[int], max_length: int | None):
    """TRL's default truncation (keep_start): prompt+completion cut to max_length tokens."""
    if max_length is None or len(prompt_ids) + len(completion_ids) <= max_length:
        return prompt_ids, completion_ids
    return prompt_ids, completion_ids[: max(0, max_length - len(prompt_ids))]


# ---------------------------------------------------------------------------------------- pair metrics


def pair_metrics(
    models: PolicyAndReference, tokenizer, pairs, beta: float, batch_size: int = 16, max_length: int | None = None
) -> dict:
    """DPO's implicit rewards r = beta * (log pi(y|x) - log pi_ref(y|x)) on held-out pairs, for any method.

    loss is the DPO (sigmoid) loss -log sigmoid(r_chosen - r_rejected); reward accuracy counts r_chosen > r_rejected
    (strictly, as TRL does: an untrained policy scores 0).
    """
    sides = []
    skipped = 0
    for row in pairs:
        prompt_ids, chosen_ids, rejected_ids = encode_pair(tokenizer, row["prompt"], row["chosen"], row["rejected"])
        if max_length is not None and len(prompt_ids) >= max_length:
            skipped += 1  # TRL drops these too: nothing of the answer would be left
            continue
        sides.append((_truncate(prompt_ids, chosen_ids, max_length), _truncate(prompt_ids, rejected_ids, max_length)))
    if not sides:
        raise RecipeError("no held-out pairs to evaluate (all prompts are longer than train.max_length?).")
    sequences = [s[0] for s in sides] + [s[1] for s in sides]
    pad_id = tokenizer.pad_token_id
    policy = sequence_logps(models.policy, sequences, batch_size, pad_id)
    with models.reference_model() as reference_model:
        reference = sequence_logps(reference_model, sequences, batch_size, pad_id)
    n = len(sides)
    chosen_rewards = beta * (policy[:n] - reference[:n])
    rejected_rewards = beta * (policy[n:] - reference[n:])
    margins = chosen_rewards - rejected_rewards
    return {
        "num_pairs": n,
        "skipped_pairs": skipped,
        "beta": beta,
        "loss": float(-F.logsigmoid(margins).mean()),
        "reward_accuracy": float((chosen_rewards > rejected_rewards).double().mean()),
        "reward_margin": float(margins.mean()),
        "chosen_reward": float(chosen_rewards.mean()),
        "rejected_reward": float(rejected_rewards.mean()),
        "chosen_logps": float(policy[:n].mean()),
        "rejected_logps": float(policy[n:].mean()),
    }


# -------------------------------------------------------------------------------------------- generation


@dataclass
class GenerationSettings:
    """How answers are generated; `eval_generation:` in conf/train.yaml, or evaluate.py's options."""

    max_prompts: int = 32
    max_new_tokens: int = 24
    batch_size: int = 32
    num_samples: int = 0  # > 0: also n sampled answers per prompt at `temperature`
    temperature: float = 1.0
    seed: int = 0

    @classmethod
    def from_config(cls, section: DictConfig | dict | None, **overrides) -> GenerationSettings:
        """The config section's values (unknown keys such as `enabled` ignored), then non-None overrides."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in dict(section or {}).items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        if settings.max_prompts < 1 or settings.max_new_tokens < 1 or settings.batch_size < 1:
            raise RecipeError("eval_generation: max_prompts, max_new_tokens and batch_size must be >= 1.")
        if settings.num_samples < 0 or (settings.num_samples and settings.temperature <= 0):
            raise RecipeError("eval_generation: num_samples must be >= 0, and temperature > 0 when sampling.")
        return settings


def heldout_tasks(dataset_cfg: DictConfig, max_prompts: int) -> list[builtin.Task]:
    """The distinct held-out prompts of a built-in dataset config, in its (kind-interleaved) order."""
    rows = builtin.build_pairs(dataset_cfg.num_train, dataset_cfg.num_eval, seed=dataset_cfg.seed)["test"]
    if dataset_cfg.get("max_eval_samples"):
        rows = rows[: dataset_cfg.max_eval_samples]
    tasks, seen = [], set()
    for row in rows:
        task = builtin.task_of(row)
        if task.prompt not in seen:
            seen.add(task.prompt)
            tasks.append(task)
    return tasks[:max_prompts]


def _stop_ids(tokenizer, model) -> list[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


@dataclass
class Answers:
    """Generated answers: token ids per answer (end-of-turn token included when produced), and each answer's
    log-probability under the model that generated it (summed over its tokens, raw logits, temperature 1)."""

    ids: list[list[int]]
    logps: list[float]


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts_ids: list[list[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
    num_samples: int = 0,
    temperature: float = 1.0,
) -> Answers:
    """Greedy answers, or `num_samples` sampled answers per prompt (consecutive), for each prompt.

    Prompts are left-padded so that every row's answer starts at the same column. The step logits come back
    from generate, so the generating model's log-probs of its own answers cost no second forward pass.
    """
    from transformers import GenerationConfig

    model.eval()
    device = _device(model)
    stop = _stop_ids(tokenizer, model)
    sampling = num_samples > 0
    per_prompt = num_samples if sampling else 1
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sampling,
        temperature=temperature if sampling else None,
        top_k=0 if sampling else None,
        top_p=1.0 if sampling else None,
        num_return_sequences=per_prompt,
        eos_token_id=stop,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
        return_dict_in_generate=True,
        output_logits=True,
    )
    step = max(1, batch_size // per_prompt)  # batch_size bounds the rows generated together
    answers = Answers([], [])
    for start in range(0, len(prompts_ids), step):
        chunk = prompts_ids[start : start + step]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for row, prompt in enumerate(chunk):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            attention[row, width - len(prompt) :] = 1
        out = model.generate(input_ids=ids.to(device), attention_mask=attention.to(device), generation_config=config)
        new_tokens = out.sequences[:, width:]
        logits = torch.stack(out.logits, dim=1).float()  # (rows, new tokens, vocab)
        token_logps = torch.log_softmax(logits, dim=-1).gather(-1, new_tokens[..., None]).squeeze(-1).cpu()
        for row, tokens in enumerate(new_tokens.tolist()):
            ends = [i for i, token in enumerate(tokens) if token in stop]
            length = ends[0] + 1 if ends else len(tokens)
            answers.ids.append(tokens[:length])
            answers.logps.append(float(token_logps[row, :length].double().sum()))
    return answers


def _decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True)


def kl_per_answer(
    models: PolicyAndReference, prompts_ids, answers: Answers, batch_size: int, pad_id: int
) -> list[float]:
    """log pi(y|x) - log pi_ref(y|x) summed over each policy answer's tokens: one-sample estimates of KL(pi || pi_ref).

    Unbiased when y is sampled from pi at temperature 1; greedy answers give a cheaper, biased proxy.
    """
    with models.reference_model() as reference_model:
        reference = sequence_logps(reference_model, list(zip(prompts_ids, answers.ids)), batch_size, pad_id)
    return [policy - ref for policy, ref in zip(answers.logps, reference.tolist())]


def score_answers(
    tasks: list[builtin.Task], policy_answers: list[str], reference_answers: list[str]
) -> tuple[dict, list[bool], list[bool]]:
    """(scores, policy passes, reference passes): pass rates overall and per kind, win rate (ties count half),
    mean length in characters."""
    if not (len(tasks) == len(policy_answers) == len(reference_answers)) or not tasks:
        raise ValueError("score_answers needs one policy and one reference answer per task, and at least one task")
    policy_pass = [builtin.verify(t, a) for t, a in zip(tasks, policy_answers)]
    reference_pass = [builtin.verify(t, a) for t, a in zip(tasks, reference_answers)]
    wins = sum(p and not r for p, r in zip(policy_pass, reference_pass))
    losses = sum(r and not p for p, r in zip(policy_pass, reference_pass))
    ties = len(tasks) - wins - losses
    kinds = sorted({t.kind for t in tasks})

    def by_kind(passed):
        return {k: _mean([ok for t, ok in zip(tasks, passed) if t.kind == k]) for k in kinds}

    return (
        {
            "num_prompts": len(tasks),
            "pass_rate": {"reference": _mean(reference_pass), "policy": _mean(policy_pass)},
            "pass_rate_by_kind": {"reference": by_kind(reference_pass), "policy": by_kind(policy_pass)},
            "win_rate": (wins + 0.5 * ties) / len(tasks),
            "wins": wins,
            "losses": losses,
            "ties": ties,
            "mean_length_chars": {
                "reference": _mean([len(a) for a in reference_answers]),
                "policy": _mean([len(a) for a in policy_answers]),
            },
        },
        policy_pass,
        reference_pass,
    )


def _mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else float("nan")


def generation_metrics(
    models: PolicyAndReference, tokenizer, tasks: list[builtin.Task], settings: GenerationSettings
) -> dict:
    """Greedy answers of policy and reference on `tasks`, scored by the verifier; KL on the policy's answers."""
    prompts = [encode_prompt(tokenizer, [{"role": "user", "content": t.prompt}]) for t in tasks]
    gen = dict(max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size)
    policy_answers = generate(models.policy, tokenizer, prompts, **gen)
    with models.reference_model() as reference_model:
        reference_answers = generate(reference_model, tokenizer, prompts, **gen)
    policy_text = [_decode(tokenizer, ids) for ids in policy_answers.ids]
    reference_text = [_decode(tokenizer, ids) for ids in reference_answers.ids]
    scores, policy_pass, reference_pass = score_answers(tasks, policy_text, reference_text)
    kls = kl_per_answer(models, prompts, policy_answers, settings.batch_size, tokenizer.pad_token_id)
    result = {
        "decoding": "greedy",
        "max_new_tokens": settings.max_new_tokens,
        **scores,
        "win_rate_ties": "half",
        "kl_policy_reference": _mean(kls),
        "kl_estimate": "mean over the policy's greedy answers of sum over answer tokens of log pi - log pi_ref",
        "samples": [
            {
                "kind": t.kind,
                "prompt": t.prompt,
                "expected": t.answer or f"{t.n} distinct colors",
                "reference_answer": r,
                "policy_answer": p,
                "reference_pass": rp,
                "policy_pass": pp,
            }
            for t, r, p, rp, pp in zip(tasks, reference_text, policy_text, reference_pass, policy_pass)
        ],
        "sampled": _sampled_metrics(models, tokenizer, tasks, prompts, settings) if settings.num_samples else None,
    }
    return result


def _sampled_metrics(models, tokenizer, tasks, prompts, settings: GenerationSettings) -> dict:
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
        [_decode(tokenizer, i) for i in policy_answers.ids],
        [_decode(tokenizer, i) for i in reference_answers.ids],
    )
    kls = kl_per_answer(models, repeated_prompts, policy_answers, settings.batch_size, tokenizer.pad_token_id)
    return {"num_samples": n, "temperature": settings.temperature, **scores, "kl_policy_reference": _mean(kls)}


# ------------------------------------------------------------------------------------------- one evaluation


def evaluate(
    cfg: DictConfig, models: PolicyAndReference, tokenizer, settings: GenerationSettings, pairs: dict | None = None
) -> dict:
    """Pair metrics on the run's held-out pairs (unless given), and generation metrics on the built-in task."""
    from prefopt.data import load_splits

    result = {
        "method": cfg.method.name,
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "beta": cfg.method.get("beta"),
        "settings": asdict(settings),
        "pairs": pairs,
        "generation": None,
        "timing_s": {},
    }
    if pairs is None:
        started = time.time()
        try:
            _, heldout = load_splits(cfg.dataset, "paired")
        except RecipeError as exc:  # e.g. an unpaired dataset (kto-mix): no pairs to score
            log.warning("no pair metrics: %s", exc)
            result["pairs_skipped"] = str(exc)
        else:
            beta = cfg.method.get("beta") or 0.1  # a recipe without beta: DPO's usual value, recorded in the result
            result["pairs"] = {
                **pair_metrics(models, tokenizer, heldout, beta, settings.batch_size, cfg.train.get("max_length")),
                "source": "prefopt.evaluation",
            }
            result["timing_s"]["pairs"] = round(time.time() - started, 2)
    if cfg.dataset.format == "builtin":
        started = time.time()
        tasks = heldout_tasks(cfg.dataset, settings.max_prompts)
        result["generation"] = generation_metrics(models, tokenizer, tasks, settings)
        result["timing_s"]["generation"] = round(time.time() - started, 2)
    return result


def write_eval(run_dir: Path, result: dict, force: bool = False) -> Path:
    refuse_existing_eval(run_dir, force)
    path = Path(run_dir) / EVAL_FILE
    write_json(path, result)
    return path


def refuse_existing_eval(run_dir: Path, force: bool) -> None:
    """Fail before loading anything when eval.json would be overwritten."""
    if (Path(run_dir) / EVAL_FILE).exists() and not force:
        raise RecipeError(
            f"{Path(run_dir) / EVAL_FILE} exists: pass --force to replace it (make eval run={run_dir} ARGS=--force)."
        )


# ---------------------------------------------------------------------------------------- loading a run


def load_run(run_dir: Path) -> tuple[DictConfig, object, PolicyAndReference]:
    """(config, tokenizer, policy and reference) of a finished run: model/ holds a LoRA adapter or a full model."""
    from transformers import AutoModelForCausalLM

    from prefopt.adapters import quantization_config
    from prefopt.models import TORCH_DTYPES, load_model, load_tokenizer, pick_precision
    from prefopt.run_files import CONFIG_FILE, MODEL_DIR

    run_dir = Path(run_dir)
    config_path, model_dir = run_dir / CONFIG_FILE, run_dir / MODEL_DIR
    if not config_path.is_file():
        raise RecipeError(f"{run_dir} is not a run directory: no {CONFIG_FILE} in it.")
    if not model_dir.is_dir():
        raise RecipeError(f"{run_dir} has no {MODEL_DIR}/: the run did not finish training (see its train.log).")
    cfg = OmegaConf.load(config_path)
    precision = pick_precision(cfg.precision)
    if precision != "fp32" and not torch.cuda.is_available():
        precision = "fp32"  # trained on a GPU in bf16/fp16: evaluate in fp32 here (bf16 matmuls crawl on CPU)
    tokenizer = load_tokenizer(cfg.model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if (model_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        quantization = quantization_config(cfg.peft, precision)
        base = load_model(cfg.model, precision, quantization, seed=cfg.train.seed)
        if quantization is None:
            base = base.to(device)
        models = PolicyAndReference(PeftModel.from_pretrained(base, str(model_dir)))
    else:
        policy = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=TORCH_DTYPES[precision]).to(device)
        reference = load_model(cfg.model, precision, seed=cfg.train.seed).to(device)
        models = PolicyAndReference(policy, reference)
    return cfg, tokenizer, models


# TRL's DPOTrainer logs the same implicit rewards (tests/recipes/test_evaluation.py checks it): reusing its final
# evaluation saves a second pass over the held-out pairs with both models (~40 s for SmolLM2 on 2 CPU cores).
_TRL_PAIR_NAMES = {
    "reward_accuracy": "eval_rewards/accuracies",
    "reward_margin": "eval_rewards/margins",
    "chosen_reward": "eval_rewards/chosen",
    "rejected_reward": "eval_rewards/rejected",
    "chosen_logps": "eval_logps/chosen",
    "rejected_logps": "eval_logps/rejected",
}


def pairs_from_trainer_metrics(cfg: DictConfig, metrics: dict) -> dict | None:
    """The pair metrics from metrics.json when the trainer is DPOTrainer (DPO, IPO, DPO+SFT), else None."""
    if cfg.method.recipe != "recipes.dpo" or any(name not in metrics for name in _TRL_PAIR_NAMES.values()):
        return None
    from prefopt.data import load_splits

    loss_types = list(cfg.method.get("loss_type") or ["sigmoid"])
    pairs = {ours: metrics[theirs] for ours, theirs in _TRL_PAIR_NAMES.items()}
    pairs.update(
        {
            "num_pairs": len(load_splits(cfg.dataset, "paired")[1]),
            "skipped_pairs": 0,
            "beta": cfg.method.beta,
            # With other loss types eval_loss is that loss, not DPO's: recompute DPO's with `make eval`.
            "loss": metrics.get("eval_loss") if loss_types == ["sigmoid"] else None,
            "source": "trl (metrics.json)",
        }
    )
    return pairs


def evaluate_after_training(cfg: DictConfig, trainer, ref_model, tokenizer, run_dir: Path) -> dict | None:
    """The launcher's last step on the built-in task: evaluate, write eval.json, print before/after, log to W&B."""
    section = cfg.get("eval_generation")
    if not section or not section.get("enabled", False) or cfg.dataset.format != "builtin":
        return None
    if getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False):
        # Sharded weights: one rank alone cannot run the model. The saved run evaluates in one process.
        log.warning("no evaluation after sharded training: run `make eval run=%s` on one device", run_dir)
        return None
    settings = GenerationSettings.from_config(section, seed=cfg.train.seed)
    policy = trainer.accelerator.unwrap_model(trainer.model)
    if ref_model is None and not hasattr(policy, "disable_adapter"):
        # Reference-free methods trained without LoRA (ORPO, SimPO with peft=none) kept no base copy.
        from prefopt.models import load_model, pick_precision

        ref_model = load_model(cfg.model, pick_precision(cfg.precision), seed=cfg.train.seed).to(_device(policy))
    pairs = pairs_from_trainer_metrics(cfg, json.loads((Path(run_dir) / METRICS_FILE).read_text()))
    result = evaluate(cfg, PolicyAndReference(policy, ref_model), tokenizer, settings, pairs=pairs)
    result["written_by"] = "scripts/train.py"
    write_eval(run_dir, result, force=True)
    log.info("held-out evaluation (%s):\n%s", EVAL_FILE, format_report(result, short=True))
    log_to_wandb(result, cfg, run_dir)
    return result


# ---------------------------------------------------------------------------------------------- reporting


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def report_rows(result: dict, short: bool = False) -> list[tuple[str, str, str]]:
    """(metric, before = reference, after = policy) rows. Before training the policy is the reference, so its
    implicit rewards are 0 (loss ln 2, no pair ranked) and its KL is 0 by definition."""
    rows = []
    pairs, gen = result.get("pairs"), result.get("generation")
    if pairs:
        rows.append((f"reward accuracy ({pairs['num_pairs']} pairs)", _fmt(0.0), _fmt(pairs["reward_accuracy"])))
        if not short:
            rows += [
                (f"DPO loss (beta {pairs['beta']})", _fmt(math.log(2)), _fmt(pairs["loss"])),
                ("mean margin", _fmt(0.0), _fmt(pairs["reward_margin"])),
                ("chosen reward", _fmt(0.0), _fmt(pairs["chosen_reward"])),
                ("rejected reward", _fmt(0.0), _fmt(pairs["rejected_reward"])),
            ]
    if gen:
        rows.append(
            (
                f"pass rate ({gen['num_prompts']} prompts, greedy)",
                _fmt(gen["pass_rate"]["reference"]),
                _fmt(gen["pass_rate"]["policy"]),
            )
        )
        rows.append(("KL(policy || reference)", _fmt(0.0), _fmt(gen["kl_policy_reference"])))
        rows.append(
            (
                "win rate over reference (ties 1/2)",
                "-",
                f"{_fmt(gen['win_rate'])} ({gen['wins']}W {gen['losses']}L {gen['ties']}T)",
            )
        )
        rows.append(
            (
                "mean answer length (chars)",
                _fmt(gen["mean_length_chars"]["reference"], 1),
                _fmt(gen["mean_length_chars"]["policy"], 1),
            )
        )
        sampled = gen.get("sampled")
        if sampled and not short:
            label = f"{sampled['num_samples']} samples, T={sampled['temperature']}"
            rates = sampled["pass_rate"]
            rows.append((f"pass rate ({label})", _fmt(rates["reference"]), _fmt(rates["policy"])))
            rows.append((f"KL ({label})", _fmt(0.0), _fmt(sampled["kl_policy_reference"])))
    return rows


def format_report(result: dict, short: bool = False) -> str:
    rows = [("metric", "before (reference)", "after (policy)")] + report_rows(result, short)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def flat_metrics(result: dict) -> dict[str, float]:
    """Scalars for W&B: eval/pairs/<name> and eval/generation/<name>[/<model>]."""
    flat = {}
    for name, value in (result.get("pairs") or {}).items():
        if isinstance(value, (int, float)):
            flat[f"eval/pairs/{name}"] = value
    gen = result.get("generation") or {}
    for name in ("win_rate", "kl_policy_reference", "wins", "losses", "ties"):
        if name in gen:
            flat[f"eval/generation/{name}"] = gen[name]
    for name in ("pass_rate", "mean_length_chars"):
        for who, value in gen.get(name, {}).items():
            flat[f"eval/generation/{name}/{who}"] = value
    return flat


def log_to_wandb(result: dict, cfg: DictConfig, run_dir: Path) -> None:
    """Into the open W&B run (training), or a new one with job_type=eval in the run's group and name."""
    if cfg.logger.name != "wandb":
        return
    import wandb

    from prefopt.tracking import wandb_mode
    from prefopt.trl_args import run_name

    opened_here = wandb.run is None
    if opened_here:
        wandb.init(
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            group=cfg.logger.group,
            name=run_name(cfg),
            job_type="eval",
            dir=str(run_dir),
            mode=wandb_mode(),
            config=OmegaConf.to_container(cfg, resolve=True),
        )
    flat = flat_metrics(result)
    wandb.run.summary.update(flat)
    payload = dict(flat)
    samples = (result.get("generation") or {}).get("samples")
    if samples:
        columns = ["kind", "prompt", "expected", "reference_answer", "policy_answer", "reference_pass", "policy_pass"]
        table = wandb.Table(columns=columns, data=[[sample[c] for c in columns] for sample in samples])
        payload["eval/generation/samples"] = table
    wandb.log(payload)
    if opened_here:
        wandb.finish()
