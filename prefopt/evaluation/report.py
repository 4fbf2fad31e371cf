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
    return rows


def format_report(result: dict, short: bool = False) -> str:
    return console_table([("metric", "before (reference)", "after (policy)")] + report_rows(result, short))


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
    for name in ("pass_rate", "right_content_rate", "mean_length_chars"):
        for who, value in gen.get(name, {}).items():
            flat[f"eval/generation/{name}/{who}"] = value
    # The harness's own names: eval/harness/<task>/acc,none/policy, eval/harness/<task>/acc_stderr,none/policy.
    for task, entry in (result.get("harness") or {}).items():
        for key, values in entry["metrics"].items():
            metric, _, filter_name = key.partition(",")
            for who in ("reference", "policy"):
                for name, value in ((key, values[who]), (f"{metric}_stderr,{filter_name}", values["stderr"][who])):
                    if value is not None:
                        flat[f"eval/harness/{task}/{name}/{who}"] = value
    return flat


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
    samples = (result.get("generation") or {}).get("samples")
    if samples:
        columns = ["kind", "prompt", "expected", "reference_answer", "policy_answer", "reference_pass", "policy_pass"]
        table = wandb.Table(columns=columns, data=[[sample[c] for c in columns] for sample in samples])
        payload["eval/generation/samples"] = table
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
