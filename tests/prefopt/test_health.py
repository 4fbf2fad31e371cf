"""prefopt/health.py: each rule fires on a fabricated metric stream, a healthy stream stays quiet, NaN stops the run."""

import logging
import math
import sys

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from prefopt.callbacks import build_callbacks
from prefopt.health import HealthThresholds, TrainingHealthMonitor, health_callbacks
from prefopt.recipe import load_recipe
from tests.conftest import compose_config


def config_and_recipe(*overrides: str):
    cfg = compose_config(*overrides)
    return cfg, load_recipe(cfg.method.recipe)


LN2 = math.log(2)


def feed(monitor, stream, args):
    """Call on_log as the Trainer does: (step, logs) pairs; returns the control of the last call."""
    state, control = TrainerState(), TrainerControl()
    for step, logs in stream:
        state.global_step = step
        monitor.on_log(args, state, control, logs=dict(logs))
    return control


@pytest.fixture
def args(tmp_path):
    return TrainingArguments(output_dir=str(tmp_path), save_strategy="no", report_to=[])


def train_log(loss, chosen=0.1, rejected=-0.2, margins=0.3, accuracy=0.8):
    return {
        "loss": loss,
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/margins": margins,
        "rewards/accuracies": accuracy,
        "learning_rate": 1e-4,
    }


HEALTHY = [
    (5 * i, train_log(LN2 - 0.05 * i, chosen=0.05 * i, rejected=-0.2 * i, margins=0.25 * i)) for i in range(1, 7)
]
HEALTHY += [
    (
        30,
        {
            "eval_loss": 0.4,
            "eval_rewards/accuracies": 0.85,
            "eval_rewards/margins": 1.5,
            "eval_rewards/chosen": 0.2,
            "eval_rewards/rejected": -1.3,
        },
    )
]


def test_a_healthy_stream_stays_quiet(args, caplog):
    monitor = TrainingHealthMonitor(HealthThresholds())
    with caplog.at_level(logging.WARNING, logger="prefopt.health"):
        control = feed(monitor, HEALTHY, args)
    assert monitor.warnings == [] and caplog.records == []
    assert not control.should_training_stop


def test_accuracy_plateau_in_the_band_warns(args, caplog):
    monitor = TrainingHealthMonitor(HealthThresholds(plateau_evals=2))
    stream = [
        (10, {"eval_loss": 0.68, "eval_rewards/accuracies": 0.57}),
        (20, {"eval_loss": 0.68, "eval_rewards/accuracies": 0.58}),
    ]
    with caplog.at_level(logging.WARNING, logger="prefopt.health"):
        feed(monitor, stream[:1], args)
        assert monitor.warnings == []  # one evaluation in the band is not a plateau yet
        feed(monitor, stream[1:], args)
    assert [w["rule"] for w in monitor.warnings] == ["accuracy_plateau"]
    assert "plateaued at 0.580" in caplog.text and "0.55-0.6" in caplog.text


def test_accuracy_leaving_the_band_is_not_a_plateau(args):
    monitor = TrainingHealthMonitor(HealthThresholds(plateau_evals=2))
    feed(
        monitor,
        [
            (10, {"eval_rewards/accuracies": 0.57, "eval_loss": 0.6}),
            (20, {"eval_rewards/accuracies": 0.75, "eval_loss": 0.5}),
        ],
        args,
    )
    assert monitor.warnings == []


def test_loss_stuck_at_ln2_after_warmup_warns_once(args, caplog):
    monitor = TrainingHealthMonitor(HealthThresholds(stuck_loss_after_step=10, stuck_loss_logs=2))
    stream = [
        (5, train_log(LN2)),
        (10, train_log(LN2 + 0.002)),
        (15, train_log(LN2 - 0.004)),
        (20, train_log(LN2 + 0.001)),
        (25, train_log(LN2)),
    ]
    with caplog.at_level(logging.WARNING, logger="prefopt.health"):
        feed(monitor, stream, args)
    assert [(w["rule"], w["step"]) for w in monitor.warnings] == [("stuck_loss", 20)]
    assert "within 0.01 of ln 2" in caplog.text


def test_stuck_loss_rule_is_off_for_losses_that_do_not_start_at_ln2(args):
    monitor = TrainingHealthMonitor(HealthThresholds(), loss_at_start=None)  # e.g. IPO, KTO
    feed(monitor, [(s, train_log(LN2)) for s in (15, 20, 25, 30)], args)
    assert monitor.warnings == []


def test_both_rewards_falling_suggests_a_larger_beta(args, caplog):
    monitor = TrainingHealthMonitor(HealthThresholds(falling_rewards_below=-1.0))
    stream = [(5, train_log(0.6, chosen=-0.5, rejected=-0.9)), (10, train_log(0.5, chosen=-1.3, rejected=-2.4))]
    with caplog.at_level(logging.WARNING, logger="prefopt.health"):
        feed(monitor, stream, args)
    assert [(w["rule"], w["step"]) for w in monitor.warnings] == [("falling_rewards", 10)]
    assert "larger method.beta" in caplog.text and "rewards/chosen=-1.300" in caplog.text


def test_falling_rewards_rule_is_off_for_reference_free_methods(args):
    monitor = TrainingHealthMonitor(HealthThresholds(), rewards_are_log_ratios=False)  # ORPO: rewards = beta * logp < 0
    feed(monitor, [(10, train_log(1.5, chosen=-2.0, rejected=-3.0))], args)
    assert monitor.warnings == []


def test_exploding_margins_warn(args, caplog):
    monitor = TrainingHealthMonitor(HealthThresholds(margin_above=10.0))
    with caplog.at_level(logging.WARNING, logger="prefopt.health"):
        feed(monitor, [(5, train_log(0.1, margins=4.0)), (10, train_log(0.01, margins=25.0))], args)
    assert [w["rule"] for w in monitor.warnings] == ["exploding_margins"]
    assert "rewards/margins=25.00 > 10.0" in caplog.text


def test_nan_loss_stops_training_and_says_no_checkpoint_exists(args, caplog):
    monitor = TrainingHealthMonitor(HealthThresholds())
    with caplog.at_level(logging.WARNING, logger="prefopt.health"):
        control = feed(monitor, [(5, train_log(0.6)), (10, train_log(float("nan")))], args)
    assert control.should_training_stop and not control.should_save
    assert monitor.stopped_reason == "non-finite training loss (nan) at step 10"
    assert "training stopped" in caplog.text and "save_strategy is 'no'" in caplog.text


def test_inf_loss_names_the_last_checkpoint_saved_before_it(tmp_path, caplog):
    args = TrainingArguments(output_dir=str(tmp_path), save_strategy="steps", save_steps=5, report_to=[])
    for step in (5, 10, 15):
        (tmp_path / f"checkpoint-{step}").mkdir()
    monitor = TrainingHealthMonitor(HealthThresholds())
    with caplog.at_level(logging.WARNING, logger="prefopt.health"):
        control = feed(monitor, [(5, train_log(0.6)), (10, train_log(0.5)), (15, train_log(float("inf")))], args)
    assert control.should_training_stop and not control.should_save
    assert f"last checkpoint saved while the loss was finite is {tmp_path / 'checkpoint-10'}" in caplog.text


def test_monitor_is_on_by_default_and_configured_per_method():
    dpo = [cb for cb in build_callbacks(*config_and_recipe()) if isinstance(cb, TrainingHealthMonitor)]
    assert len(dpo) == 1 and dpo[0].loss_at_start is None and dpo[0].rewards_are_log_ratios  # DPO+SFT: above ln 2
    assert dpo[0].thresholds == HealthThresholds.from_config(compose_config().monitor)
    (plain,) = health_callbacks(*config_and_recipe("method.loss_type=[sigmoid]"))
    assert plain.loss_at_start == pytest.approx(LN2)
    (orpo,) = health_callbacks(*config_and_recipe("method=orpo"))
    assert orpo.loss_at_start is None and not orpo.rewards_are_log_ratios
    assert health_callbacks(*config_and_recipe("monitor.enabled=false")) == []
    (tight,) = health_callbacks(*config_and_recipe("monitor.margin_above=3.5"))
    assert tight.thresholds.margin_above == 3.5


class FakeWandb:
    """Stands in for the wandb module: records what the monitor sends."""

    AlertLevel = type("AlertLevel", (), {"WARN": "WARN"})

    def __init__(self, offline):
        self.logged, self.alerts = [], []
        self.run = type("Run", (), {"offline": offline, "summary": {}})()

    def log(self, data):
        self.logged.append(data)

    def alert(self, **kwargs):
        self.alerts.append(kwargs)


@pytest.mark.parametrize("offline", [True, False])
def test_warnings_reach_wandb_as_a_metric_and_online_as_an_alert(args, monkeypatch, offline):
    fake = FakeWandb(offline)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monitor = TrainingHealthMonitor(HealthThresholds(margin_above=10.0))
    feed(monitor, [(10, train_log(0.01, margins=25.0))], args)
    assert fake.logged == [{"health/exploding_margins": 1, "health/warnings": 1, "train/global_step": 10}]
    assert fake.run.summary["health/last_warning"].startswith("step 10 [exploding_margins]: reward margins")
    assert [a["title"] for a in fake.alerts] == ([] if offline else ["training health: exploding_margins"])
