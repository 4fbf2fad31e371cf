"""Online DPO: each round samples answers from the current policy, pairs its best with its worst, trains DPO on them.

A round: `online.prompts_per_round` training prompts, `online.samples_per_prompt` answers each from the policy as it
is now (prefopt.evaluation's batched generation), scored by the built-in verifier or a reward model (`reward.model`),
best against worst (prefopt.data.pairs: ties and cut-off answers never chosen), `online.steps_per_round` steps of the
recipe's DPO trainer on that round's pairs, then greedy answers to the held-out prompts scored as every run is
(prefopt.evaluation). The policy stays in memory from round to round; the reference is the starting model throughout
(the base with the LoRA adapter disabled, or a frozen copy with peft=none). Each round builds a fresh trainer, so the
optimizer state starts again each round.

TRL's experimental OnlineDPOTrainer does not fit: it draws two answers per prompt, and trains on ties (the first answer
counts as chosen when both score the same).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from prefopt.data.pairs import Score, builtin_prompts, pairs_from_samples, read_prompts, sample_answers, scorer
from prefopt.errors import RecipeError
from prefopt.reports import format_cell, markdown_table, pyplot, save_figure, write_csv
from prefopt.run_files import EVAL_FILE, METRICS_FILE, MODEL_DIR, record_model, refuse_existing_run, write_json

log = logging.getLogger(__name__)

ROUNDS_CSV, ROUNDS_MD, ROUNDS_PNG = "rounds.csv", "rounds.md", "rounds.png"
SAMPLES_FILE, PAIRS_FILE, ROUND_FILE = "samples.jsonl", "pairs.jsonl", "round.json"
# rounds.csv's columns: what was sampled and paired, what trained, and the held-out numbers after the round.
COLUMNS = (
    "round",
    "prompts",
    "answers",
    "pairs",
    "ties",
    "too_few_distinct",
    "unfinished_answers",
    "mean_chosen_score",
    "mean_rejected_score",
    "trained_steps",
    "train_loss",
    "pass_rate",
    "reference_pass_rate",
    "right_content_rate",
    "reference_right_content_rate",
    "kl",
    "seconds",
)


@dataclass(frozen=True)
class OnlineSettings:
    """The `online:` section of conf/online_dpo.yaml."""

    rounds: int = 3
    prompts_per_round: int = 32
    samples_per_prompt: int = 4
    steps_per_round: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 48
    batch_size: int = 32
    require_finished: bool = True
    prompts: str | None = None

    @classmethod
    def from_config(cls, section: DictConfig) -> OnlineSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise RecipeError(f"online: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))}).")
        settings = cls(**OmegaConf.to_container(section, resolve=True))
        for name in ("rounds", "prompts_per_round", "steps_per_round", "max_new_tokens", "batch_size"):
            value = getattr(settings, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RecipeError(f"online.{name}={value!r}: must be a whole number >= 1.")
        if settings.samples_per_prompt < 2:
            raise RecipeError(
                f"online.samples_per_prompt={settings.samples_per_prompt}: best against worst needs 2 or more."
            )
        if not settings.temperature > 0 or not 0 < settings.top_p <= 1:
            raise RecipeError(
                f"online.temperature={settings.temperature}, online.top_p={settings.top_p}: sampling needs "
                f"temperature > 0 and 0 < top_p <= 1."
            )
        return settings


def check_online(cfg: DictConfig, recipe, setup) -> None:
    """What this loop supports, checked before anything loads: a paired recipe with a reference, in one process,
    measured against the starting model."""
    if recipe.data_format != "paired" or not recipe.uses_reference or recipe.trains_reward_model:
        raise RecipeError(
            f"online DPO trains a paired method with a reference (method=dpo or ipo); method={cfg.method.name} is not one."
        )
    if setup.reference not in ("adapter_disabled", "copy"):
        raise RecipeError(
            f"online DPO measures every round against the starting model (ref=base); ref={cfg.ref.name} is not supported."
        )
    if cfg.method.get("precompute_ref_log_probs") is True:  # auto stays unresolved here: TRL's default, false
        raise RecipeError(
            "online DPO: each round's pairs are new, so method.precompute_ref_log_probs must be auto or false."
        )
    if setup.processes > 1:
        raise RecipeError("online DPO runs in one process: launch it without launcher=/gpus=.")
    if cfg.dataset.format != "builtin" and not cfg.online.get("prompts"):
        raise RecipeError(
            f"online DPO samples the built-in task's training prompts (dataset=builtin), or your own with "
            f"online.prompts=<file> and reward.model=<reward model>; dataset={cfg.dataset.name} gives neither."
        )


def round_config(cfg: DictConfig, settings: OnlineSettings, round_dir: Path) -> DictConfig:
    """The launcher's config for one round's trainer: steps_per_round steps, no checkpoints, logs every few steps."""
    round_cfg = cfg.copy()
    with open_dict(round_cfg):
        round_cfg.train.max_steps = settings.steps_per_round
        round_cfg.train.output_dir = str(round_dir)  # with no checkpoints, the trainer writes nothing there
        round_cfg.train.save_strategy = "no"  # a round is minutes: nothing to resume
        round_cfg.train.eval_strategy = "no"
        round_cfg.train.warmup_steps = min(cfg.train.get("warmup_steps") or 0, settings.steps_per_round - 1)
        round_cfg.train.logging_steps = min(cfg.train.logging_steps, settings.steps_per_round)
    return round_cfg


def prompt_pool(cfg: DictConfig, settings: OnlineSettings) -> list[dict]:
    """The prompts rounds draw from in turn: your file, or the built-in training prompts of the dataset's split."""
    wanted = settings.rounds * settings.prompts_per_round
    if settings.prompts:
        return read_prompts(settings.prompts, wanted)
    return builtin_prompts(wanted, cfg.train.seed, split_seed=cfg.dataset.seed)


def prompts_of_round(pool: list[dict], settings: OnlineSettings, round_number: int) -> list[dict]:
    """Round k's prompts: the next prompts_per_round of the pool, starting over when it runs out."""
    start = (round_number - 1) * settings.prompts_per_round
    return [pool[(start + i) % len(pool)] for i in range(min(settings.prompts_per_round, len(pool)))]


@contextlib.contextmanager
def forwards_restored(*models):
    """Each trainer patches its models' forward (TRL's fused LM head, then the recipe's): put back what was there,
    so the next round's trainer patches the plain model instead of wrapping the last round's patch."""
    absent = object()
    saved = [(m, m.__dict__.get("forward", absent)) for m in models if m is not None]
    try:
        yield
    finally:
        for module, forward in saved:
            if forward is absent:
                module.__dict__.pop("forward", None)
            else:
                module.forward = forward


def _base_model(policy):
    return policy.get_base_model() if hasattr(policy, "get_base_model") else policy


class OnlineDPO:
    """One online DPO run: the policy (and reference) in memory, a round at a time; `run()` does them all."""

    def __init__(self, cfg: DictConfig, run_dir: Path, score: Score | None = None):
        from prefopt.model_setup import resolve_model_setup
        from prefopt.recipe import load_recipe
        from prefopt.validation import check_sections, validate

        check_sections(cfg)
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.settings = OnlineSettings.from_config(cfg.online)
        self.recipe = load_recipe(cfg.method.recipe)
        self.setup = resolve_model_setup(cfg, self.recipe)
        check_online(cfg, self.recipe, self.setup)
        validate(round_config(cfg, self.settings, self.run_dir), self.recipe, self.setup)
        self.score = score
        self.rows: list[dict] = []
        self.trained_rounds = 0

    # ------------------------------------------------------------------------------------------- set-up

    def load(self) -> None:
        from prefopt.adapters import build_policy_and_reference, quantization_config, reference_for_evaluation
        from prefopt.models import check_available, load_tokenizer
        from prefopt.run_files import save_config

        refuse_existing_run(self.run_dir)
        check_available(self.cfg.model)
        self.pool = prompt_pool(self.cfg, self.settings)
        if self.score is None:
            self.score = scorer(self.cfg.reward)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.run_dir)
        self.tokenizer = load_tokenizer(self.cfg.model)
        self.quantization = quantization_config(self.cfg.peft, self.setup.precision)
        self.policy, self.ref_model, self.peft_config = build_policy_and_reference(
            self.cfg, self.setup, self.quantization
        )
        self.device = torch.device("cpu" if self.setup.use_cpu else "cuda")
        if self.quantization is None:  # 4-bit weights were placed while loading
            self.policy.to(self.device)
            if self.ref_model is not None:
                self.ref_model.to(self.device)
        # What the held-out evaluation measures against: the frozen copy (peft=none), else the adapter disabled.
        self.eval_reference = reference_for_evaluation(
            self.cfg, self.setup, self.ref_model, self.device, self.quantization
        )

    # ------------------------------------------------------------------------------------------- one round

    def sample(self, prompts: list[dict], round_number: int) -> tuple[list[list[str]], list[list[bool]]]:
        """The current policy's answers to this round's prompts (seeded per round: a rerun draws the same)."""
        torch.manual_seed(self.cfg.train.seed + round_number)
        s = self.settings
        return sample_answers(
            self.policy,
            self.tokenizer,
            prompts,
            num_samples=s.samples_per_prompt,
            batch_size=s.batch_size,
            max_new_tokens=s.max_new_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
        )

    def train(self, pairs: list[dict], round_dir: Path) -> dict:
        """steps_per_round steps of the recipe's trainer on this round's pairs; the trained policy stays in memory."""
        from datasets import Dataset
        from transformers import set_seed

        from prefopt.health import health_callbacks

        round_cfg = round_config(self.cfg, self.settings, round_dir)
        rows = [{key: pair[key] for key in ("prompt", "chosen", "rejected")} for pair in pairs]
        set_seed(self.cfg.train.seed + self.trained_rounds)  # LoRA initialization (first round), dropout, data order
        with forwards_restored(_base_model(self.policy), self.ref_model):
            trainer = self.recipe.build_trainer(
                round_cfg,
                args=self.recipe.build_config(round_cfg, self.setup),
                model=self.policy,
                ref_model=self.ref_model,
                tokenizer=self.tokenizer,
                train_dataset=Dataset.from_list(rows),
                eval_dataset=None,
                peft_config=self.peft_config,
                callbacks=health_callbacks(round_cfg, self.recipe),
            )
            policy = trainer.accelerator.unwrap_model(trainer.model)
            if "ref" in getattr(policy, "peft_config", {}):
                # TRL measures an adapter it did not create against a frozen copy of it ("ref"), i.e. against the
                # last round's policy; delete it, so the reference stays the base with the adapter disabled.
                policy.delete_adapter("ref")
            metrics = trainer.train().metrics
            self.policy = policy
            self.peft_config = None  # the adapter exists now: later rounds train it on
            steps = trainer.state.global_step
            history = trainer.state.log_history
            del trainer
        self.trained_rounds += 1
        return {"trained_steps": steps, "train_loss": metrics.get("train_loss"), "log_history": history}

    def evaluate(self, final: bool) -> dict:
        """The held-out evaluation of the current policy against the reference: generation only after a round,
        everything launcher runs write to eval.json (held-out pair metrics too) after the last."""
        from prefopt.evaluation import GenerationSettings, PolicyAndReference, evaluate
        from prefopt.evaluation.scoring import generation_metrics, heldout_tasks

        settings = GenerationSettings.from_config(self.cfg.get("eval_generation"), seed=self.cfg.train.seed)
        # Before any round trained, the policy has no adapter to disable: it is its own reference.
        untrained_plain = self.eval_reference is None and not hasattr(self.policy, "disable_adapter")
        models = PolicyAndReference(self.policy, self.policy if untrained_plain else self.eval_reference)
        if final:
            return evaluate(self.cfg, models, self.tokenizer, settings)
        if self.cfg.dataset.format != "builtin":
            return {"generation": None}
        tasks = heldout_tasks(self.cfg.dataset, settings.max_prompts)
        return {"generation": generation_metrics(models, self.tokenizer, tasks, settings)}

    def round(self, round_number: int) -> dict:
        started = time.time()
        s = self.settings
        round_dir = self.run_dir / f"round-{round_number}"
        round_dir.mkdir(parents=True, exist_ok=True)
        prompts = prompts_of_round(self.pool, s, round_number)
        answers, finished = self.sample(prompts, round_number)
        _write_jsonl(
            round_dir / SAMPLES_FILE,
            [{**row, "samples": a, "finished": f} for row, a, f in zip(prompts, answers, finished)],
        )
        pairs, stats = pairs_from_samples(prompts, answers, finished, self.score, require_finished=s.require_finished)
        _write_jsonl(round_dir / PAIRS_FILE, pairs)
        log.info(
            "round %d: %d prompts x %d answers -> %d pairs, %d ties, %d with under two distinct answers, %d cut off",
            round_number,
            stats["prompts"],
            s.samples_per_prompt,
            stats["pairs"],
            stats["ties"],
            stats["too_few_distinct"],
            stats["unfinished_answers"],
        )
        training = {"trained_steps": 0, "train_loss": None, "log_history": []}
        if pairs:
            training = self.train(pairs, round_dir)
        else:
            log.warning(
                "round %d: every prompt's %d answers scored the same; nothing to train",
                round_number,
                s.samples_per_prompt,
            )
        final = round_number == s.rounds
        result = self.evaluate(final)
        row = _row(round_number, stats, training, result.get("generation"), time.time() - started)
        write_json(
            round_dir / ROUND_FILE,
            {"row": row, "pairing": stats, "training": training, "evaluation": result, "settings": vars_of(s)},
        )
        self.rows.append(row)
        write_summary(self.run_dir, self.rows)  # after every round: a stopped run keeps the rounds it finished
        _log_round_to_wandb(self.cfg, row)
        log.info("round %d: %s", round_number, _row_line(row))
        return result

    # ------------------------------------------------------------------------------------------- the run

    def run(self) -> dict:
        started = time.time()
        self.load()
        result = {}
        for round_number in range(1, self.settings.rounds + 1):
            result = self.round(round_number)
        return self.finish(result, time.time() - started)

    def finish(self, final_eval: dict, seconds: float) -> dict:
        """model/ (the adapter, or the full model) when any round trained; metrics.json and eval.json as train.py
        writes them."""
        from prefopt.evaluation import write_eval
        from prefopt.evaluation.report import format_report, log_to_wandb

        status = "completed" if self.trained_rounds else "nothing trained: every round's answers tied"
        if self.trained_rounds:
            self.policy.save_pretrained(str(self.run_dir / MODEL_DIR))
            self.tokenizer.save_pretrained(str(self.run_dir / MODEL_DIR))
            record_model(self.run_dir, None)
        trained = [r for r in self.rows if r["trained_steps"]]
        metrics = {
            "method": self.cfg.method.name,
            "online": True,
            "model": self.cfg.model.name,
            "dataset": self.cfg.dataset.name,
            "peft": self.cfg.peft.name,
            "beta": self.cfg.method.get("beta"),
            "precision": self.setup.precision,
            "status": status,
            "rounds": len(self.rows),
            "trained_rounds": self.trained_rounds,
            "pairs": sum(r["pairs"] for r in self.rows),
            "train_loss": trained[-1]["train_loss"] if trained else None,
            "settings": vars_of(self.settings),
            "rounds_table": self.rows,
            "wall_time_s": round(seconds, 1),
        }
        write_json(self.run_dir / METRICS_FILE, metrics)
        if final_eval.get("generation") is not None or final_eval.get("pairs") is not None:
            final_eval = {**final_eval, "written_by": "scripts/online_dpo.py"}
            write_eval(self.run_dir, final_eval, force=True)
            log.info("held-out evaluation (%s):\n%s", EVAL_FILE, format_report(final_eval, short=True))
            log_to_wandb(final_eval, self.cfg, self.run_dir)
        log.info("%s: %s", status, self.run_dir)
        return metrics


def vars_of(settings: OnlineSettings) -> dict:
    return dataclasses.asdict(settings)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _rate(generation: dict | None, name: str, model: str):
    value = ((generation or {}).get(name) or {}).get(model)
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _row(round_number: int, stats: dict, training: dict, generation: dict | None, seconds: float) -> dict:
    return {
        "round": round_number,
        "prompts": stats["prompts"],
        "answers": stats["prompts"] * stats["samples_per_prompt"],
        "pairs": stats["pairs"],
        "ties": stats["ties"],
        "too_few_distinct": stats["too_few_distinct"],
        "unfinished_answers": stats["unfinished_answers"],
        "mean_chosen_score": stats["mean_chosen_score"],
        "mean_rejected_score": stats["mean_rejected_score"],
        "trained_steps": training["trained_steps"],
        "train_loss": training["train_loss"],
        "pass_rate": _rate(generation, "pass_rate", "policy"),
        "reference_pass_rate": _rate(generation, "pass_rate", "reference"),
        "right_content_rate": _rate(generation, "right_content_rate", "policy"),
        "reference_right_content_rate": _rate(generation, "right_content_rate", "reference"),
        "kl": (generation or {}).get("kl_policy_reference"),
        "seconds": round(seconds, 1),
    }


def _row_line(row: dict) -> str:
    shown = ("pairs", "trained_steps", "train_loss", "pass_rate", "right_content_rate", "kl")
    return ", ".join(f"{name} {format_cell(row[name])}" for name in shown)


def write_summary(run_dir: Path, rows: list[dict]) -> None:
    """rounds.csv (every column), rounds.md (the same as a table) and rounds.png (held-out rates, pairs, KL)."""
    run_dir = Path(run_dir)
    write_csv(run_dir / ROUNDS_CSV, COLUMNS, rows)
    table = [list(COLUMNS)] + [
        [format_cell(row[c], ".1f" if c == "seconds" else ".3f") for c in COLUMNS] for row in rows
    ]
    (run_dir / ROUNDS_MD).write_text(
        "# Online DPO rounds\n\nHeld-out numbers after each round's training (reference: the starting model).\n\n"
        + markdown_table(table)
        + "\n"
    )
    plt = pyplot()
    rounds = [row["round"] for row in rows]
    fig, (rates, counts, kl) = plt.subplots(1, 3, figsize=(13, 3.8))
    for name, label in (("pass_rate", "pass rate"), ("right_content_rate", "right content")):
        line = rates.plot(rounds, [_nan(row[name]) for row in rows], marker="o", label=f"policy: {label}")[0]
        reference = [_nan(row[f"reference_{name}"]) for row in rows]
        rates.plot(rounds, reference, linestyle="--", color=line.get_color(), label=f"reference: {label}")
    rates.set(title="held-out prompts", xlabel="round", ylabel="rate", ylim=(-0.02, 1.02))
    rates.legend(fontsize=7)
    width = 0.4
    counts.bar([r - width / 2 for r in rounds], [row["pairs"] for row in rows], width, label="pairs")
    counts.bar([r + width / 2 for r in rounds], [row["ties"] for row in rows], width, label="ties")
    counts.set(title="each round's prompts", xlabel="round", ylabel="prompts")
    counts.legend(fontsize=7)
    kl.plot(rounds, [_nan(row["kl"]) for row in rows], marker="o")
    kl.set(title="KL(policy || reference), greedy answers", xlabel="round", ylabel="nats per answer")
    for axis in (rates, counts, kl):
        axis.set_xticks(rounds)
    fig.tight_layout()
    save_figure(fig, run_dir / ROUNDS_PNG)


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def _log_round_to_wandb(cfg: DictConfig, row: dict) -> None:
    """The round's row into the open W&B run (its trainers' steps log there too, through transformers' callback)."""
    if cfg.logger.name != "wandb":
        return
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return
    from prefopt.tracking import tolerate_wandb_errors

    with tolerate_wandb_errors("online round logging"):
        wandb.log({f"online/{name}": value for name, value in row.items() if value is not None})
