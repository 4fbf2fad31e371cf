"""scripts/compare_methods.py: two methods, two steps each on the tiny model; every number in the table is the
runs' own (eval.json, metrics.json). Also checks what scripts/train.py leaves after training: eval.json and the
before/after table in train.log."""

import csv
import json

import pytest
import yaml

from prefopt.config import compose_config
from prefopt.reports import compare
from tests.conftest import load_script
from tests.scripts.compared_runs import METHODS, OVERRIDES, SEED, compared_runs, run_dir

HEADER = [
    "method",
    "seeds",
    "pass rate before",
    "pass rate after",
    "right content before",
    "right content after",
    "reward accuracy",
    "KL to reference",
    "wall time (s)",
]


def run_files(out, method):
    run = run_dir(out, method)
    return json.loads((run / "metrics.json").read_text()), json.loads((run / "eval.json").read_text()), run


def test_one_record_per_run_with_the_runs_own_numbers_overall_and_per_kind():
    out, report, _ = compared_runs()
    assert [row["method"] for row in report["runs"]] == METHODS and report["seeds"] == [SEED]
    assert set(OVERRIDES) <= set(report["overrides"])
    for record in report["runs"]:
        metrics, evaluation, run = run_files(out, record["method"])
        generation = evaluation["generation"]
        assert record["status"] == "completed" and record["run_dir"] == str(run) and record["seed"] == SEED
        assert yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"] == SEED
        assert record["wall_time_s"] == metrics["wall_time_s"] > 0
        assert record["pass_before"] == generation["pass_rate"]["reference"] == 0.0  # a random model passes nothing
        assert record["pass_after"] == generation["pass_rate"]["policy"]
        assert record["content_before"] == generation["right_content_rate"]["reference"]
        assert record["content_after"] == generation["right_content_rate"]["policy"]
        assert record["reward_accuracy"] == evaluation["pairs"]["reward_accuracy"]
        assert record["kl"] == generation["kl_policy_reference"]
        for kind, rate in generation["right_content_rate_by_kind"]["policy"].items():
            assert record[f"content_after/{kind}"] == rate
        # Each number with its noise: KL's standard error over the answers, rates' Wilson interval over prompts.
        assert record["kl_se"] == generation["kl_policy_reference_se"] > 0
        assert record["pass_after_low"] <= record["pass_after"] <= record["pass_after_high"]
        assert record["pass_before_high"] > 0 and record["reward_accuracy_high"] > record["reward_accuracy_low"]
    # One seed: the method rows are the runs' numbers, with their own noise.
    for row, record in zip(report["rows"], report["runs"]):
        assert row["seeds"] == 1 and row["kl"] == record["kl"] and row["kl_se"] == record["kl_se"]
        assert row["pass_after_high"] == record["pass_after_high"]


def test_compare_md_holds_both_tables_compare_csv_the_runs_and_compare_png_the_plot():
    out, report, _ = compared_runs()
    lines = (out / "compare.md").read_text().splitlines()
    table = [line for line in lines[: lines.index("## Per kind")] if line.startswith("|")]
    assert [cell.strip() for cell in table[0].strip("|").split("|")] == HEADER
    assert len(table) == 2 + len(METHODS)
    for line, row in zip(table[2:], report["rows"]):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == row["method"] and cells[1] == "1"
        assert (
            cells[6]
            == f"{row['reward_accuracy']:.3f} ({row['reward_accuracy_low']:.3f}-{row['reward_accuracy_high']:.3f})"
        )
        assert cells[7] == f"{row['kl']:.3f} ± {row['kl_se']:.3f}"
    kinds = [line for line in lines[lines.index("## Per kind") :] if line.startswith("|")]
    assert len(kinds) == 2 + 4 * len(METHODS)  # every method's four kinds
    with (out / "compare.csv").open() as f:
        records = list(csv.DictReader(f))
    assert [(r["method"], r["seed"]) for r in records] == [(m, str(SEED)) for m in METHODS]
    assert float(records[0]["kl"]) == report["runs"][0]["kl"]
    assert float(records[0]["kl_se"]) == report["runs"][0]["kl_se"]
    for key in ("pass_before", "pass_after", "content_before", "content_after", "reward_accuracy", "kl"):
        assert {key + "_se", key + "_low", key + "_high"} <= set(records[0]), key
    png = (out / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_train_py_writes_eval_json_and_prints_before_and_after():
    out, _, _ = compared_runs()
    dpo_metrics, dpo_eval, dpo_run = run_files(out, "dpo")
    assert dpo_eval["written_by"] == "scripts/train.py" and dpo_eval["settings"]["max_prompts"] == 6
    # DPO's pair metrics are the trainer's own final evaluation; ORPO's are computed against the base model.
    assert dpo_eval["pairs"]["source"] == "trl (metrics.json)"
    assert dpo_eval["pairs"]["reward_accuracy"] == dpo_metrics["eval_rewards/accuracies"]
    _, orpo_eval, _ = run_files(out, "orpo")
    assert orpo_eval["pairs"]["source"] == "prefopt.evaluation" and orpo_eval["pairs"]["num_pairs"] == 8
    log = (dpo_run / "train.log").read_text()
    table = log[log.index("held-out evaluation (eval.json)") :]
    for row in (
        "before (reference)",
        "after (policy)",
        "reward accuracy (8 pairs)",
        "pass rate (6 prompts, greedy)",
        "KL(policy || reference)",
    ):
        assert row in table, row


def test_unknown_method_is_refused_before_training(tmp_path, capsys):
    script = load_script("scripts/compare_methods.py")
    assert script.main(["--methods", "dpo,ppo", "--out", str(tmp_path / "out")]) == 2
    assert "--methods: unknown ppo in ppo; choose from cpo, dpo, ipo, kto, online-dpo, orpo" in capsys.readouterr().err
    assert script.main(["--methods", "dpo,dpo", "--out", str(tmp_path / "out")]) == 2
    assert "--methods: dpo given twice" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_override_that_does_not_compose_is_refused_before_training(tmp_path, capsys):
    script = load_script("scripts/compare_methods.py")
    methods = "dpo,ipo-w=ipo:method.ipo_weight=0.2"  # not a key of conf/method/ipo.yaml: needs a +
    argv = ["--methods", methods, "model=tiny-random", "logger=none", "--out", str(tmp_path / "out")]
    assert script.main(argv) == 2
    err = capsys.readouterr().err
    assert "--methods ipo-w: Could not override 'method.ipo_weight'" in err and "+method.ipo_weight" in err
    assert "training" not in err and not (tmp_path / "out").exists()
    assert (
        script.main(["--methods", "dpo", "model=tiny-random", "train.max_stepz=3", "--out", str(tmp_path / "out")]) == 2
    )
    assert "--methods dpo: Could not override 'train.max_stepz'" in capsys.readouterr().err


def test_the_method_list_is_every_method_config_that_trains_a_policy_and_variants_carry_overrides():
    script = load_script("scripts/compare_methods.py")
    assert script.available_methods() == ["cpo", "dpo", "ipo", "kto", "online-dpo", "orpo", "sft", "sft-dpo", "simpo"]
    plain, default, staged = script.parse_methods("plain-dpo=dpo:method.loss_type=[sigmoid],dpo,sft->dpo=sft-dpo")
    assert (plain.label, plain.method, plain.overrides) == ("plain-dpo", "dpo", ("method.loss_type=[sigmoid]",))
    assert list(compose_config(f"method={plain.method}", *plain.overrides).method.loss_type) == ["sigmoid"]
    assert (default.label, default.method, default.overrides) == ("dpo", "dpo", ())
    assert plain.command(script.REPO / "run", [])[2:4] == ["method=dpo", "method.loss_type=[sigmoid]"]
    assert staged.stage_dirs(script.REPO / "run") == [script.REPO / "run" / "sft", script.REPO / "run" / "dpo"]


def test_bad_seeds_and_a_seed_override_are_refused(tmp_path, capsys):
    script = load_script("scripts/compare_methods.py")
    assert script.main(["--seeds", "1,x", "--out", str(tmp_path / "a")]) == 2
    assert "--seeds 1,x: give comma-separated integers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main(["train.seed=3", "--out", str(tmp_path / "b")])
    assert "train.seed=3: give seeds with --seeds" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_method_in_stages_reads_before_from_its_first_stage_and_after_from_its_last(tmp_path):
    script = load_script("scripts/compare_methods.py")
    (staged,) = script.parse_methods("sft->dpo=sft-dpo")
    run = tmp_path / script.run_dir_name(staged.label) / "seed-1"
    assert staged.command(run, ["model=tiny-random"])[1:] == [
        str(script.REPO / "scripts/train.py"),
        "method=sft-dpo",
        "model=tiny-random",
        f"hydra.run.dir={run}",
    ]
    assert run.parent.name == "sft-dpo"
    for stage, (before, after, wall) in {"sft": (0.25, 0.5, 10.0), "dpo": (0.5, 0.75, 20.0)}.items():
        (run / stage).mkdir(parents=True)
        (run / stage / "metrics.json").write_text(json.dumps({"status": "completed", "wall_time_s": wall}))
        rates = {"reference": before, "policy": after}
        generation = {"pass_rate": rates, "right_content_rate": rates, "kl_policy_reference": after}
        (run / stage / "eval.json").write_text(json.dumps({"generation": generation}))
    record = compare.read_run(staged.label, 1, run, staged.stage_dirs(run))
    assert record["status"] == "completed" and record["wall_time_s"] == 30.0
    assert (record["pass_before"], record["pass_after"], record["content_before"]) == (0.25, 0.75, 0.25)


def test_every_method_trains_one_budget_even_where_one_has_its_own():
    script = load_script("scripts/compare_methods.py")
    assert script.one_budget(["logger=none"]) == ["logger=none", "train.max_steps=30"]  # conf/train.yaml's steps
    assert script.one_budget(["train.max_steps=60"]) == ["train.max_steps=60"]
