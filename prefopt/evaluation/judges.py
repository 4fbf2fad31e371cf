"""Who judges the held-out answers (the `judge` config group, conf/judge/), its checks before anything loads, and the
judges: each turns the two models' answers into a preference per prompt, policy over reference, in [0, 1].

  none          no judge: the answers and their lengths only
  verifier      the built-in task's verifier: a pass beats a fail (the built-in task only)
  reward_model  a sequence-classification reward model scores each answer; the higher score wins, equal ones tie
  llm           a pairwise LLM judge at an OpenAI-compatible endpoint (prefopt.evaluation.llm_judge)
  auto          the default: the verifier on the built-in task, a reward model wherever judge.model is given
                (the verifier still scoring the built-in task), else none

On the built-in task the verifier scores the answers under every judge but none, so a reward model or LLM judge is
also measured against it (prefopt.evaluation.winrates.verifier_agreement).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from prefopt.errors import RecipeError

log = logging.getLogger(__name__)

JUDGES = ("auto", "none", "verifier", "reward_model", "llm")
EXPECTED_REWARD_MODEL = (
    "a `make train-rm` run directory (config.yaml and model/), a folder holding a sequence-classification model with "
    "one score (config.json), or a Hub id of one"
)


def judge_config(cfg: DictConfig) -> DictConfig:
    """The run's `judge` section; judge=auto for a config written before there was one."""
    section = cfg.get("judge")
    return section if section is not None else OmegaConf.create({"name": "auto", "model": None})


def resolve(cfg: DictConfig) -> str:
    """The judge that runs: none, verifier, reward_model or llm (judge=auto decided by the dataset and judge.model)."""
    judge = judge_config(cfg)
    if judge.name != "auto":
        return judge.name
    if judge.get("model"):
        return "reward_model"
    return "verifier" if cfg.dataset.format == "builtin" else "none"


def uses_verifier(cfg: DictConfig) -> bool:
    """The built-in task's answers are scored by its verifier under every judge but none."""
    return cfg.dataset.format == "builtin" and resolve(cfg) != "none"


def _positive(judge: DictConfig, *keys: str, allow_zero: tuple[str, ...] = ()) -> list[str]:
    found = []
    for key in keys:
        value = judge.get(key)
        low_ok = key in allow_zero
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (value == 0 and not low_ok):
            found.append(f"judge.{key}={value!r}: must be a number {'>= 0' if low_ok else '> 0'}.")
    return found


def problems(cfg: DictConfig) -> list[str]:
    """Config rules of the judge, checked with every other rule before anything loads (prefopt.validation)."""
    judge = judge_config(cfg)
    if judge.get("name") not in JUDGES:
        return [f"judge.name={judge.get('name')!r}: use judge= one of {', '.join(JUDGES)} (conf/judge/)."]
    name = resolve(cfg)
    if name == "verifier" and cfg.dataset.format != "builtin":
        return [
            f"judge=verifier scores the built-in task's answers only, not dataset={cfg.dataset.name}: use "
            f"judge=reward_model judge.model=<reward model> or judge=llm, or judge=none for the answers alone."
        ]
    if name == "reward_model":
        if not judge.get("model"):
            return [f"judge=reward_model needs judge.model=<{EXPECTED_REWARD_MODEL}>."]
        return _positive(judge, "batch_size", "max_length") + reward_model_problems(str(judge.model))
    if name == "llm":
        return _llm_problems(judge)
    return []


def reward_model_problems(source: str) -> list[str]:
    """What is wrong with `judge.model` as a reward model, as far as the files tell without loading it (a Hub id is
    checked when it loads, before any answer is generated)."""
    from prefopt.data.pairs import reward_run_dir

    key = f"judge.model={source}"
    path = Path(source).expanduser()
    if not path.exists():
        if source.startswith(("/", "./", "../", "~")) or source.count("/") != 1:
            return [f"{key} does not exist: expected {EXPECTED_REWARD_MODEL}."]
        return []
    run_dir = reward_run_dir(source)
    if run_dir is not None:
        return _reward_run_problems(run_dir, key)
    if not path.is_dir():
        return [f"{key} is a file: expected {EXPECTED_REWARD_MODEL}."]
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        return []  # a PEFT adapter folder: its base and head are checked when it loads
    if not (path / "config.json").is_file():
        return [f"{key}: no config.json in the folder: expected {EXPECTED_REWARD_MODEL}."]
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        return [f"{key}: its config.json cannot be read ({exc})."]
    architectures = config.get("architectures") or []
    if architectures and not any("SequenceClassification" in a for a in architectures):
        return [
            f"{key} holds a {', '.join(architectures)}, not a reward model: expected a sequence-classification model "
            f"with one score (num_labels=1), e.g. the run directory of `make train-rm`."
        ]
    labels = len(config["id2label"]) if isinstance(config.get("id2label"), dict) else config.get("num_labels")
    if labels is not None and labels != 1:
        return [f"{key} has {labels} labels: a reward model has one score (num_labels=1)."]
    return []


def _reward_run_problems(run_dir: Path, key: str) -> list[str]:
    from prefopt.recipe import load_recipe
    from prefopt.run_files import CONFIG_FILE, MODEL_DIR

    recipe_module = OmegaConf.select(OmegaConf.load(run_dir / CONFIG_FILE), "method.recipe")
    try:
        trains_reward_model = bool(recipe_module) and load_recipe(recipe_module).trains_reward_model
    except RecipeError:
        trains_reward_model = False
    if not trains_reward_model:
        return [
            f"{key}: {run_dir} is not a reward model run (its config.yaml has method.recipe={recipe_module}): "
            f"expected {EXPECTED_REWARD_MODEL}. Train one with `make train-rm`."
        ]
    if not (run_dir / MODEL_DIR).is_dir():
        return [f"{key}: {run_dir} has no {MODEL_DIR}/: the reward model run did not finish training."]
    return []


def _llm_problems(judge: DictConfig) -> list[str]:
    from prefopt.evaluation.llm_judge import read_template

    found = []
    url = judge.get("base_url")
    if not url:
        found.append("judge=llm needs judge.base_url=<the endpoint up to /v1, e.g. http://localhost:8000/v1>.")
    elif not str(url).startswith(("http://", "https://")):
        found.append(f"judge.base_url={url}: must start with http:// or https:// (e.g. http://localhost:8000/v1).")
    if not judge.get("model"):
        found.append("judge=llm needs judge.model=<the model name the endpoint serves>.")
    try:
        read_template(judge.get("template"))
    except RecipeError as exc:
        found.append(str(exc))
    found += _positive(judge, "concurrency", "max_tokens", "timeout_s")
    found += _positive(judge, "max_retries", "temperature", allow_zero=("max_retries", "temperature"))
    return found


# ------------------------------------------------------------------------------------------------- the judges


@dataclass
class Judgement:
    """A judge's verdicts on held-out answers: the preference per prompt (policy over reference, in [0, 1]), each
    answer's score where the judge gives one (a reward, a pass), fields per prompt for samples.jsonl, and numbers
    of its own for eval.json's judge section."""

    preferences: list[float]
    reference_scores: list[float] | None = None
    policy_scores: list[float] | None = None
    per_prompt: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def preferences_from_scores(reference_scores, policy_scores) -> list[float]:
    """The higher score wins; equal scores tie."""
    return [1.0 if p > r else 0.0 if p < r else 0.5 for r, p in zip(reference_scores, policy_scores, strict=True)]


def verifier_judgement(reference_pass: list[bool], policy_pass: list[bool]) -> Judgement:
    reference, policy = [float(x) for x in reference_pass], [float(x) for x in policy_pass]
    return Judgement(preferences_from_scores(reference, policy), reference, policy)


class RewardModelJudge:
    """`judge=reward_model`: the reward model scores prompt + answer through its own chat template."""

    name = "reward_model"

    def __init__(self, judge: DictConfig):
        from prefopt.data.pairs import RewardModel

        self.source = str(judge.model)
        self.scorer = RewardModel(self.source, int(judge.batch_size), int(judge.max_length), key="judge.model")
        self.scorer.tokenizer.truncation_side = "left"  # a long conversation loses its start, never the answer

    def check(self) -> None:
        """Loaded in __init__: a missing or wrong model has failed already."""

    def judge(self, prompts: list, reference_answers: list[str], policy_answers: list[str]) -> Judgement:
        conversations = [[{"role": "user", "content": p}] if isinstance(p, str) else list(p) for p in prompts]
        scores = self.scorer.score_conversations(
            [
                c + [{"role": "assistant", "content": a}]
                for answers in (reference_answers, policy_answers)
                for c, a in zip(conversations, answers)
            ]
        )
        reference, policy = scores[: len(prompts)], scores[len(prompts) :]
        return Judgement(preferences_from_scores(reference, policy), reference, policy)


class LLMJudgeAdapter:
    """`judge=llm`: both orders per prompt, the mean of the two verdicts as the preference."""

    name = "llm"

    def __init__(self, judge: DictConfig):
        from prefopt.evaluation.llm_judge import LLMJudge

        self.client = LLMJudge(judge)
        self.source = self.client.model

    def check(self) -> None:
        self.client.check()

    def judge(self, prompts: list, reference_answers: list[str], policy_answers: list[str]) -> Judgement:
        verdicts = self.client.judge(prompts, reference_answers, policy_answers)
        judgments = 2 * len(prompts)
        return Judgement(
            verdicts.preferences(),
            per_prompt=[
                {"llm_verdict_policy_second": a, "llm_verdict_policy_first": b}
                for a, b in zip(verdicts.policy_second, verdicts.policy_first)
            ],
            extra={
                "judgments": judgments,
                "unparsed": verdicts.unparsed,
                "first_position_rate": verdicts.first_position_picked / verdicts.decided if verdicts.decided else None,
                "consistent_rate": sum(
                    a == b and a is not None for a, b in zip(verdicts.policy_second, verdicts.policy_first)
                )
                / len(prompts),
            },
        )


def load_judge(cfg: DictConfig):
    """The reward-model or LLM judge the config asks for, loaded and checked (before any answer is generated), or
    None for none and the verifier. A RecipeError names what is missing or wrong and what was expected."""
    found = problems(cfg)
    if found:
        raise RecipeError("invalid judge config:\n  - " + "\n  - ".join(found))
    name = resolve(cfg)
    if name not in ("reward_model", "llm"):
        return None
    judge = RewardModelJudge(judge_config(cfg)) if name == "reward_model" else LLMJudgeAdapter(judge_config(cfg))
    judge.check()
    return judge


def judge_section(
    name: str,
    model: str | None,
    judgement: Judgement,
    reference_answers: list[str],
    policy_answers: list[str],
    *,
    verifier_passes: tuple[list[bool], list[bool]] | None = None,
    seed: int = 0,
) -> dict:
    """eval.json's `judge` section, flat (docs/evaluation.md lists its keys): win rate and length-controlled win rate
    with bootstrap intervals, counts, mean scores with standard errors, lengths, and the judge's own numbers.
    `verifier_passes` (reference, policy) adds the agreement with the built-in task's verifier."""
    from prefopt.evaluation.winrates import mean_and_stderr, summarize, verifier_agreement

    reference_lengths, policy_lengths = [len(a) for a in reference_answers], [len(a) for a in policy_answers]
    section = {
        "name": name,
        "model": model,
        "num_prompts": len(judgement.preferences),
        **summarize(judgement.preferences, policy_lengths, reference_lengths, seed=seed),
        "mean_length_chars_reference": sum(reference_lengths) / len(reference_lengths),
        "mean_length_chars_policy": sum(policy_lengths) / len(policy_lengths),
        "mean_score_reference": None,
        "mean_score_reference_stderr": None,
        "mean_score_policy": None,
        "mean_score_policy_stderr": None,
        "verifier_agreement": None,
        "verifier_agreement_pairs": None,
        "judgments": None,
        "unparsed": None,
        "first_position_rate": None,
        "consistent_rate": None,
        "error": None,
    }
    if judgement.reference_scores is not None:
        section["mean_score_reference"], section["mean_score_reference_stderr"] = mean_and_stderr(
            judgement.reference_scores
        )
        section["mean_score_policy"], section["mean_score_policy_stderr"] = mean_and_stderr(judgement.policy_scores)
    if verifier_passes is not None:
        reference_pass, policy_pass = verifier_passes
        agreement, pairs = verifier_agreement(judgement.preferences, policy_pass, reference_pass)
        section["verifier_agreement"], section["verifier_agreement_pairs"] = agreement, pairs
    section.update(judgement.extra)
    return section


def failed_section(name: str, model: str | None, error: str) -> dict:
    """The judge section of a judge that could not judge: what failed, no numbers."""
    return {"name": name, "model": model, "error": error}


class UnavailableJudge:
    """A judge that could not be loaded after training: judging reports its error, the rest of the evaluation runs."""

    def __init__(self, name: str, source: str | None, error: str):
        self.name, self.source, self.error = name, source, error

    def judge(self, prompts, reference_answers, policy_answers) -> Judgement:
        from prefopt.evaluation.llm_judge import JudgeUnavailable

        raise JudgeUnavailable(self.error)
