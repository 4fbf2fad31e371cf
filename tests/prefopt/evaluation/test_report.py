"""prefopt/evaluation/report.py on a hand-made result: the before/after table, line for line, and the W&B scalars."""

import math

from prefopt.evaluation.report import flat_metrics, format_report

RESULT = {
    "pairs": {
        "num_pairs": 8,
        "skipped_pairs": 0,
        "beta": 0.1,
        "loss": 0.61234,
        "reward_accuracy": 0.625,
        "reward_margin": 0.25,
        "chosen_reward": 0.1,
        "rejected_reward": -0.15,
        "source": "prefopt.evaluation",
    },
    "generation": {
        "num_prompts": 6,
        "pass_rate": {"reference": 0.0, "policy": 0.5},
        "kl_policy_reference": float("nan"),  # written as null to eval.json; shown as '-'
        "win_rate": 0.75,
        "wins": 3,
        "losses": 0,
        "ties": 3,
        "mean_length_chars": {"reference": 12.75, "policy": 7.0},
        "sampled": {
            "num_samples": 2,
            "temperature": 0.7,
            "pass_rate": {"reference": 0.25, "policy": None},
            "kl_policy_reference": 1.5,
        },
    },
}


def test_the_table_has_before_and_after_columns_aligned_under_a_rule():
    assert format_report(RESULT).splitlines() == [
        "metric                              before (reference)  after (policy)",
        "----------------------------------  ------------------  ----------------",
        "reward accuracy (8 pairs)           0.000               0.625",
        "DPO loss (beta 0.1)                 0.693               0.612",
        "mean margin                         0.000               0.250",
        "chosen reward                       0.000               0.100",
        "rejected reward                     0.000               -0.150",
        "pass rate (6 prompts, greedy)       0.000               0.500",
        "KL(policy || reference)             0.000               -",
        "win rate over reference (ties 1/2)  -                   0.750 (3W 0L 3T)",
        "mean answer length (chars)          12.8                7.0",
        "pass rate (2 samples, T=0.7)        0.250               -",
        "KL (2 samples, T=0.7)               0.000               1.500",
    ]


def test_the_short_table_keeps_reward_accuracy_and_the_greedy_rows():
    rows = [line.split("  ")[0] for line in format_report(RESULT, short=True).splitlines()[2:]]
    assert rows == [
        "reward accuracy (8 pairs)",
        "pass rate (6 prompts, greedy)",
        "KL(policy || reference)",
        "win rate over reference (ties 1/2)",
        "mean answer length (chars)",
    ]


def test_the_right_content_rate_gets_its_row_after_the_pass_rate():
    generation = {**RESULT["generation"], "right_content_rate": {"reference": 0.625, "policy": 0.5}}
    lines = format_report({**RESULT, "generation": generation}, short=True).splitlines()[2:]
    assert lines[2].split() == ["right", "content,", "any", "format", "0.625", "0.500"]
    assert lines[1].startswith("pass rate (6 prompts, greedy)")


def test_flat_metrics_name_each_scalar_by_section_and_model():
    flat = flat_metrics(RESULT)
    assert flat["eval/pairs/reward_accuracy"] == 0.625 and flat["eval/pairs/num_pairs"] == 8
    assert "eval/pairs/source" not in flat  # text is not a scalar
    assert flat["eval/generation/pass_rate/policy"] == 0.5 and flat["eval/generation/wins"] == 3
    assert flat["eval/generation/mean_length_chars/reference"] == 12.75
    assert math.isnan(flat["eval/generation/kl_policy_reference"])
    assert not any(name.startswith("eval/generation/sampled") for name in flat)
