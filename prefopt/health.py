"""Training-health monitor: warns, on the console and in W&B, when the logged metrics show a known failure.

On by default (`monitor:` in conf/train.yaml holds the switch and the thresholds); turn it off with
`monitor.enabled=false`. Each rule warns once per run; a NaN/inf training loss stops the run.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from omegaconf import DictConfig
from transformers import TrainerCallback

from prefopt.recipe import Recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthThresholds:
    accuracy_plateau_low: float = 0.55
    accuracy_plateau_high: float = 0.60
    plateau_evals: int = 2  # consecutive evaluations inside the band
    stuck_loss_tolerance: float = 0.01  # |loss - ln 2| below this counts as "not learning"
    stuck_loss_after_step: int = 10  # warm-up: the loss may sit at ln 2 until then
    stuck_loss_logs: int = 2  # consecutive training logs at ln 2 after warm-up
    falling_rewards_below: float = -1.0  # chosen AND rejected reward both under this
    margin_above: float = 10.0
    stop_on_nonfinite_loss: bool = True

    @classmethod
    def from_config(cls, section: DictConfig | dict | None) -> HealthThresholds:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(section or {}).items() if k in known})


class TrainingHealthMonitor(TrainerCallback):
    """Reads every `on_log` (train and eval) and applies the rules below.

    `loss_at_start` is the loss of a policy equal to its reference (ln 2 for DPO's sigmoid loss); None turns
    the stuck-loss rule off for losses that start elsewhere (IPO, KTO, ORPO, DPO+SFT, SFT).
    `rewards_are_log_ratios` is False for reference-free methods (ORPO, SimPO, CPO), whose "rewards" are
    scaled log-probabilities that are always negative: the falling-rewards rule does not apply to them (nor to SFT,
    which logs no rewards).
    """

    def __init__(
        self,
        thresholds: HealthThresholds,
        loss_at_start: float | None = math.log(2),
        rewards_are_log_ratios: bool = True,
    ) -> None:
        self.thresholds = thresholds
        self.loss_at_start = loss_at_start
        self.rewards_are_log_ratios = rewards_are_log_ratios
        self.warnings: list[dict] = []  # {"step", "rule", "message"}, in the order they fired
        self.stopped_reason: str | None = None
        self._eval_accuracies: list[float] = []
        self._stuck_logs = 0
        self._last_finite_step = 0

    # ---------------------------------------------------------------------------------------------------- rules

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        is_eval = any(key.startswith("eval_") for key in logs)
        prefix = "eval_" if is_eval else ""
        step = state.global_step
        loss = logs.get(f"{prefix}loss")
        if loss is not None and not math.isfinite(loss):
            self._nonfinite_loss(args, control, step, loss, is_eval)
            return control
        if not is_eval and loss is not None:
            self._last_finite_step = step
            self._check_stuck_loss(step, loss)
        if is_eval and "eval_rewards/accuracies" in logs:
            self._check_plateau(step, logs["eval_rewards/accuracies"])
        chosen, rejected = logs.get(f"{prefix}rewards/chosen"), logs.get(f"{prefix}rewards/rejected")
        if self.rewards_are_log_ratios and chosen is not None and rejected is not None:
            limit = self.thresholds.falling_rewards_below
            if chosen < limit and rejected < limit:
                self._warn(
                    "falling_rewards",
                    step,
                    (
                        f"chosen and rejected rewards are both falling ({prefix}rewards/chosen={chosen:.3f}, "
                        f"{prefix}rewards/rejected={rejected:.3f}, both below {limit}): the policy is lowering the "
                        f"chosen answers' likelihood too, not only the rejected ones'. Try a larger method.beta, a lower "
                        f"learning rate, or method.loss_type=[sigmoid,sft]."
                    ),
                )
        margin = logs.get(f"{prefix}rewards/margins")
        if margin is not None and math.isfinite(margin) and margin > self.thresholds.margin_above:
            self._warn(
                "exploding_margins",
                step,
                (
                    f"reward margins are exploding ({prefix}rewards/margins={margin:.2f} > "
                    f"{self.thresholds.margin_above}): "
                    f"the policy is drifting far from the reference, which usually overfits the pairs. Try a larger "
                    f"method.beta, a lower learning rate or fewer steps."
                ),
            )
        return control

    def _check_stuck_loss(self, step: int, loss: float) -> None:
        t = self.thresholds
        if self.loss_at_start is None or step <= t.stuck_loss_after_step:
            return
        self._stuck_logs = self._stuck_logs + 1 if abs(loss - self.loss_at_start) < t.stuck_loss_tolerance else 0
        if self._stuck_logs >= t.stuck_loss_logs:
            self._warn(
                "stuck_loss",
                step,
                (
                    f"the training loss is still {loss:.4f}, within {t.stuck_loss_tolerance} of {_start_name(self.loss_at_start)} "
                    f"(where it starts) after {step} steps: the policy is not separating chosen from rejected. Check that "
                    f"the learning rate is not too small, that the adapter trains (peft.target_modules), and that chosen "
                    f"and rejected answers differ."
                ),
            )

    def _check_plateau(self, step: int, accuracy: float) -> None:
        t = self.thresholds
        self._eval_accuracies.append(accuracy)
        recent = self._eval_accuracies[-t.plateau_evals :]
        in_band = [t.accuracy_plateau_low <= a <= t.accuracy_plateau_high for a in recent]
        if len(recent) == t.plateau_evals and all(in_band):
            self._warn(
                "accuracy_plateau",
                step,
                (
                    f"eval reward accuracy has plateaued at {accuracy:.3f} (the last {t.plateau_evals} evaluations within "
                    f"{t.accuracy_plateau_low}-{t.accuracy_plateau_high}): the pairs may be too ambiguous to learn, or "
                    f"method.beta is off. Inspect the data, or sweep beta."
                ),
            )

    def _nonfinite_loss(self, args, control, step: int, loss: float, is_eval: bool) -> None:
        if is_eval:
            self._warn("nonfinite_eval_loss", step, f"the eval loss is {loss} at step {step}: the weights are broken.")
            return
        if not self.thresholds.stop_on_nonfinite_loss:
            self._warn("nonfinite_loss", step, f"the training loss is {loss} at step {step}.")
            return
        control.should_training_stop = True
        control.should_save = False  # never write (or rotate good checkpoints out for) broken weights
        if getattr(args.save_strategy, "value", args.save_strategy) == "no":
            kept = "save_strategy is 'no', so there is no checkpoint to go back to: do not use the saved model/."
        else:
            good = _checkpoints_up_to(Path(args.output_dir), self._last_finite_step)
            kept = (
                f"the last checkpoint saved while the loss was finite is {good[-1]}."
                if good
                else "no checkpoint had been saved while the loss was finite."
            )
        self.stopped_reason = f"non-finite training loss ({loss}) at step {step}"
        self._warn(
            "nonfinite_loss",
            step,
            (
                f"the training loss is {loss} at step {step}: training stopped. {kept} Lower the learning rate, check "
                f"the data for empty answers, or use fp32/bf16 instead of fp16."
            ),
            once=False,
        )

    # -------------------------------------------------------------------------------------------------- output

    def _warn(self, rule: str, step: int, message: str, once: bool = True) -> None:
        if once and any(w["rule"] == rule for w in self.warnings):
            return
        self.warnings.append({"step": step, "rule": rule, "message": message})
        log.warning("training health [%s] at step %d: %s", rule, step, message)
        _to_wandb(rule, step, message, count=len(self.warnings))


def _start_name(loss: float) -> str:
    return f"ln 2 = {math.log(2):.4f}" if math.isclose(loss, math.log(2)) else f"{loss:.4f}"


def _checkpoints_up_to(output_dir: Path, step: int) -> list[Path]:
    found = []
    for path in output_dir.glob("checkpoint-*"):
        number = path.name.removeprefix("checkpoint-")
        if number.isdigit() and int(number) <= step:
            found.append((int(number), path))
    return [path for _, path in sorted(found)]


def _to_wandb(rule: str, step: int, message: str, count: int) -> None:
    """A health/<rule> metric and the text in the run summary; an alert (e-mail/Slack) when online."""
    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return
    wandb.log({f"health/{rule}": 1, "health/warnings": count, "train/global_step": step})
    wandb.run.summary["health/last_warning"] = f"step {step} [{rule}]: {message}"
    if not wandb.run.offline:
        wandb.alert(title=f"training health: {rule}", text=message, level=wandb.AlertLevel.WARN)


def health_callbacks(cfg: DictConfig, recipe: Recipe) -> list[TrainerCallback]:
    """[TrainingHealthMonitor] configured for the recipe, or [] with `monitor.enabled=false`."""
    section = cfg.get("monitor")
    if not section or not section.get("enabled", True):
        return []
    return [
        TrainingHealthMonitor(
            HealthThresholds.from_config(section),
            loss_at_start=recipe.loss_at_start(cfg),
            rewards_are_log_ratios=recipe.uses_reference,
        )
    ]
