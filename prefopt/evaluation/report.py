"""What an evaluation reports: the before/after table printed to the console and the training log, and the
scalars and answer samples logged to W&B."""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from prefopt.reports import console_table, format_cell


def report_rows(result: dict, short: bool = False) -> list[tuple[str, str, str]]:
    """(metric, before = reference, after = policy) rows. Before training the policy is the reference, so its
    implicit rewards are 0 (loss ln 2, no pair ranked) and its KL is 0 by definition."""
    rows = []
    pairs, gen = result.get("pairs"), result.get("generation")
    if pairs:
        rows.append(
            (f"reward accuracy ({pairs['num_pairs']} pairs)", format_cell(0.0), format_cell(pairs["reward_accuracy"]))
        )
        if not short:
            rows += [
                (f"DPO loss (beta {pairs['beta']})", format_cell(math.log(2)), format_cell(pairs["loss"])),
                ("mean margin", format_cell(0.0), format_cell(pairs["reward_margin"])),
                ("chosen reward", format_cell(0.0), format_cell(pairs["chosen_reward"])),
                ("rejected reward", format_cell(0.0), format_cell(pairs["rejected_reward"])),
            ]
    if gen:
        rows.append(
            (
                f"pass rate ({gen['num_prompts']} prompts, greedy)",
                format_cell(gen["pass_rate"]["reference"]),
                format_cell(gen["pass_rate"]["policy"]),
            )
        )
        if "right_content_rate" in gen:  # absent from eval.json files written before it was measured
            rows.append(
                (
                    "right content, any format",
                    format_cell(gen["right_content_rate"]["reference"]),
                    format_cell(gen["right_content_rate"]["policy"]),
                )
            )
        rows.append(("KL(policy || reference)", format_cell(0.0), format_cell(gen["kl_policy_reference"])))
        rows.append(
            (
                "win rate over reference (ties 1/2)",
                "-",
                f"{format_cell(gen['win_rate'])} ({gen['wins']}W {gen['losses']}L {gen['ties']}T)",
            )
        )
        rows.append(
            (
                "mean answer length (chars)",
                format_cell(gen["mean_length_chars"]["reference"], ".1f"),
                format_cell(gen["mean_length_chars"]["policy"], ".1f"),
            )
        )
        sampled = gen.get("sampled")
        if sampled and not short:
            label = f"{sampled['num_samples']} samples, T={sampled['temperature']}"
            rates = sampled["pass_rate"]
            rows.append((f"pass rate ({label})", format_cell(rates["reference"]), format_cell(rates["policy"])))
            rows.append((f"KL ({label})", format_cell(0.0), format_cell(sampled["kl_policy_reference"])))
    answers = result.get("answers")
    if answers and not gen:  # the built-in task's rows above already say this
        rows += _answer_rows(answers)
    if result.get("judge"):
        rows += _judge_rows(result["judge"])
    return rows


def _answer_rows(answers: dict) -> list[tuple[str, str, str]]:
    if not answers.get("num_prompts"):
        return [("held-out answers", "-", answers.get("note") or "none")]
    lengths = answers["mean_length_chars"]
    return [
        ("KL(policy || reference)", format_cell(0.0), format_cell(answers["kl_policy_reference"])),
        (
            f"mean answer length ({answers['num_prompts']} prompts, {answers['decoding']}, chars)",
            format_cell(lengths["reference"], ".1f"),
            format_cell(lengths["policy"], ".1f"),
        ),
    ]


JUDGE_LABELS = {"verifier": "verifier", "reward_model": "reward model", "llm": "LLM judge"}


def _interval(judge: dict, key: str) -> str:
    low, high = judge.get(f"{key}_ci_low"), judge.get(f"{key}_ci_high")
    return f"{format_cell(judge.get(key))} [{format_cell(low)}, {format_cell(high)}]"


def _judge_rows(judge: dict) -> list[tuple[str, str, str]]:
    """The judge's rows: its mean score before and after (a reward model), its win rate and length-controlled win
    rate with their intervals, its agreement with the verifier, and an LLM judge's unparsed replies."""
    label = JUDGE_LABELS.get(judge["name"], judge["name"])
    if judge.get("error"):
        return [(f"judge: {label}", "-", "failed: see the message above")]
    rows = []
    if judge["name"] == "reward_model" and judge.get("mean_score_policy") is not None:
        rows.append(
            (
                "mean reward (+- stderr)",
                f"{format_cell(judge['mean_score_reference'])} +- {format_cell(judge['mean_score_reference_stderr'])}",
                f"{format_cell(judge['mean_score_policy'])} +- {format_cell(judge['mean_score_policy_stderr'])}",
            )
        )
    percent = round(100 * judge.get("confidence", 0.95))
    counts = f"({judge['wins']}W {judge['losses']}L {judge['ties']}T)"
    rows.append((f"{label} win rate [{percent}% CI]", "-", f"{_interval(judge, 'win_rate')} {counts}"))
    rows.append((f"{label} length-controlled win rate", "-", _interval(judge, "lc_win_rate")))
    if judge.get("verifier_agreement_pairs"):
        rows.append(
            (
                f"{label} agrees with verifier ({judge['verifier_agreement_pairs']} pairs)",
                "-",
                format_cell(judge["verifier_agreement"]),
            )
        )
    if judge.get("judgments"):
        rows.append(("unparsed judge replies (ties)", "-", f"{judge['unparsed']} of {judge['judgments']}"))
    return rows


def format_report(result: dict, short: bool = False) -> str:
    return console_table([("metric", "before (reference)", "after (policy)")] + report_rows(result, short))


def flat_metrics(result: dict) -> dict[str, float]:
    """Scalars for W&B: eval/pairs/<name>, eval/generation/<name>[/<model>], eval/answers/..., eval/judge/<name>."""
    flat = {}
    for name, value in (result.get("pairs") or {}).items():
        if isinstance(value, (int, float)):
            flat[f"eval/pairs/{name}"] = value
    gen = result.get("generation") or {}
    for name in ("win_rate", "kl_policy_reference", "wins", "losses", "ties"):
        if name in gen:
            flat[f"eval/generation/{name}"] = gen[name]
    for name in ("pass_rate", "right_content_rate", "mean_length_chars"):
        for who, value in gen.get(name, {}).items():
            flat[f"eval/generation/{name}/{who}"] = value
    for name, value in (result.get("judge") or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"eval/judge/{name}"] = value
    answers = result.get("answers") or {}
    if "kl_policy_reference" in answers:
        flat["eval/answers/kl_policy_reference"] = answers["kl_policy_reference"]
    for who, value in (answers.get("mean_length_chars") or {}).items():
        flat[f"eval/answers/mean_length_chars/{who}"] = value
    # The harness's own names: eval/harness/<task>/acc,none/policy, eval/harness/<task>/acc_stderr,none/policy.
    for task, entry in (result.get("harness") or {}).items():
        for key, values in entry["metrics"].items():
            metric, _, filter_name = key.partition(",")
            for who in ("reference", "policy"):
                for name, value in ((key, values[who]), (f"{metric}_stderr,{filter_name}", values["stderr"][who])):
                    if value is not None:
                        flat[f"eval/harness/{task}/{name}/{who}"] = value
    return flat


# samples.jsonl's fields as W&B table columns, those a row has (prefopt.evaluation.samples).
SAMPLE_COLUMNS = (
    "prompt",
    "kind",
    "expected",
    "reference_answer",
    "policy_answer",
    "reference_length_chars",
    "policy_length_chars",
    "reference_pass",
    "policy_pass",
    "judge_preference",
    "reference_reward",
    "policy_reward",
    "llm_verdict_policy_second",
    "llm_verdict_policy_first",
    "kl",
)


def _cell(value):
    """A conversation as `role: text` turns (a table cell holds text), anything else as it is."""
    if isinstance(value, list):
        return "\n\n".join(f"{m.get('role')}: {m.get('content')}" for m in value)
    return value


def log_to_wandb(result: dict, cfg: DictConfig, run_dir: Path, job_type: str = "eval") -> None:
    """Into the open W&B run (training), or a new one with `job_type` in the run's group and name."""
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
            job_type=job_type,
            dir=str(run_dir),
            mode=wandb_mode(),
            config=OmegaConf.to_container(cfg, resolve=True),
        )
    flat = flat_metrics(result)
    wandb.run.summary.update(flat)
    payload = dict(flat)
    samples = result.get("samples")
    if samples:
        columns = [c for c in SAMPLE_COLUMNS if c in samples[0]]
        rows = [[_cell(sample.get(c)) for c in columns] for sample in samples]
        payload["eval/samples"] = wandb.Table(columns=columns, data=rows)
    harness = result.get("harness")
    if harness:
        columns = ["task", "metric", "reference", "policy", "reference_stderr", "policy_stderr"]
        rows = [
            [task, key, v["reference"], v["policy"], v["stderr"]["reference"], v["stderr"]["policy"]]
            for task, entry in harness.items()
            for key, v in entry["metrics"].items()
        ]
        payload["eval/harness/table"] = wandb.Table(columns=columns, data=rows)
    wandb.log(payload)
    if opened_here:
        wandb.finish()
