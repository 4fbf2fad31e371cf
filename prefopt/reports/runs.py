"""Reading a finished run's numbers: the JSON files it left (which may be missing or broken), its config, and its
evaluation's rates, KL and judge's win rates as estimates with their noise (prefopt/evaluation writes the counts,
standard errors and bootstrap intervals)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from prefopt.reports.stats import Z95, Estimate, finite_number, mean, rate
from prefopt.run_files import CONFIG_FILE


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`; None when the file is missing, unreadable, not JSON or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def lookup(data, *path):
    """data[path[0]][path[1]]...; None as soon as a key is missing or a level is not a dict."""
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def read_config(run_dir: Path) -> dict:
    """The run's config.yaml as plain data; {} when there is none."""
    import yaml

    path = Path(run_dir) / CONFIG_FILE
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def method_label(method: Mapping) -> str:
    """A method config's name with the loss terms it adds after its first spelled out: dpo with loss_type
    [sigmoid, sft] is dpo+sft, ipo with [ipo, sft] ipo+sft; a single loss, or none, is the name alone."""
    losses = method.get("loss_type")
    extra = [] if losses is None or isinstance(losses, str) else [str(loss) for loss in list(losses)[1:]]
    return "+".join([str(method["name"]), *extra])


def generation_estimates(evaluation: dict | None, who: str = "policy") -> dict[str, Estimate]:
    """`who`'s (policy or reference) greedy pass rate and right-content rate over the held-out prompts, with their
    Wilson intervals; for the policy also its win rate over the reference (ties count half: the interval is a
    little wide) and its KL to the reference with the standard error over its answers (on any dataset)."""
    generation = lookup(evaluation, "generation") or {}
    n = generation.get("num_prompts")
    estimates = {
        "pass_rate": rate(lookup(generation, "pass_rate", who), n, "prompts"),
        "right_content": rate(lookup(generation, "right_content_rate", who), n, "prompts"),
    }
    if who == "policy":
        estimates["win_rate"] = rate(generation.get("win_rate"), n, "prompts")
        # Data without a verifier has no generation section; its answers section holds the same KL.
        source = generation if generation.get("kl_policy_reference") is not None else lookup(evaluation, "answers")
        source = source or {}
        estimates["kl"] = mean(
            source.get("kl_policy_reference"),
            source.get("kl_policy_reference_se"),
            source.get("num_prompts"),
            "answers",
        )
    return estimates


def reward_accuracy(evaluation: dict | None, value=None) -> Estimate:
    """Held-out reward accuracy (eval.json's, or `value` read elsewhere, e.g. metrics.json) over eval.json's pairs."""
    pairs = lookup(evaluation, "pairs") or {}
    return rate(pairs.get("reward_accuracy") if value is None else value, pairs.get("num_pairs"), "pairs")


# eval.json's judge section: the win rates a reward model or LLM judge gives the policy over its reference.
JUDGE_RATES = {"judge_win_rate": "win_rate", "judge_lc_win_rate": "lc_win_rate"}


def judge_estimates(evaluation: dict | None) -> dict[str, Estimate]:
    """The judge's win rate and length-controlled win rate of the policy over its reference, each with the 95%
    bootstrap interval over prompts that eval.json holds (its standard error read off the interval's width). Only a
    reward-model or LLM judge's: the verifier's win rate is generation_estimates' win_rate, and a judge that failed
    has none."""
    judge = lookup(evaluation, "judge") or {}
    if judge.get("name") in (None, "verifier") or judge.get("error"):
        return {key: Estimate(None, rate=True) for key in JUDGE_RATES}
    estimates = {}
    for key, name in JUDGE_RATES.items():
        value, low, high = (finite_number(judge.get(k)) for k in (name, f"{name}_ci_low", f"{name}_ci_high"))
        if value is None or low is None or high is None:
            estimates[key] = Estimate(value, rate=True)
        else:
            n = judge.get("num_prompts")
            estimates[key] = Estimate(value, (high - low) / (2 * Z95), low, high, n, "prompts", rate=True)
    return estimates
