"""Reading a finished run's numbers: the JSON files it left (which may be missing or broken), its config, and its
evaluation's rates and KL as estimates with their noise (prefopt/evaluation writes the counts and standard errors)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from prefopt.reports.stats import Estimate, mean, rate
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
    little wide) and its KL to the reference with the standard error over its answers."""
    generation = lookup(evaluation, "generation") or {}
    n = generation.get("num_prompts")
    estimates = {
        "pass_rate": rate(lookup(generation, "pass_rate", who), n, "prompts"),
        "right_content": rate(lookup(generation, "right_content_rate", who), n, "prompts"),
    }
    if who == "policy":
        estimates["win_rate"] = rate(generation.get("win_rate"), n, "prompts")
        estimates["kl"] = mean(
            generation.get("kl_policy_reference"), generation.get("kl_policy_reference_se"), n, "answers"
        )
    return estimates


def reward_accuracy(evaluation: dict | None, value=None) -> Estimate:
    """Held-out reward accuracy (eval.json's, or `value` read elsewhere, e.g. metrics.json) over eval.json's pairs."""
    pairs = lookup(evaluation, "pairs") or {}
    return rate(pairs.get("reward_accuracy") if value is None else value, pairs.get("num_pairs"), "pairs")
