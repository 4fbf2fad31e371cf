"""scripts/check_data.py: the same Hydra overrides as train.py, the tokenizer only, a table or one JSON object."""

import json
import subprocess
import sys

from prefopt.data import builtin
from prefopt.data.report import BOUNDARY_MARK
from tests.conftest import REPO, load_script

check_data = load_script("scripts/check_data.py")


def test_json_report_on_builtin_data_with_the_tiny_model(capsys):
    assert check_data.main(["model=tiny-random", "dataset.num_train=32", "dataset.num_eval=8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["dataset"], report["model"], report["method"], report["format"]) == (
        "builtin",
        "tiny-random",
        "dpo",
        "paired",
    )
    assert (report["splits"]["train"]["rows"], report["splits"]["eval"]["rows"]) == (32, 8)
    assert report["splits"]["train"]["boundary_mismatches"] == 0 and report["eval_prompts_in_train"] == 0
    first = builtin.build_pairs(32, 8, seed=0)["train"][0]
    assert report["example"]["row"] == {k: first[k] for k in ("prompt", "chosen", "rejected")}
    assert BOUNDARY_MARK + first["chosen"][0]["content"] in report["example"]["rendered"]


def test_method_and_train_overrides_change_the_report(capsys):
    assert (
        check_data.main(
            [
                "model=tiny-random",
                "method=kto",
                "train.max_length=70",
                "dataset.num_train=8",
                "dataset.num_eval=4",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    train = report["splits"]["train"]
    assert report["format"] == "unpaired" and train["rows"] == 16 and report["max_length"] == 70
    # ChatML with the char tokenizer: a one-turn prompt is its characters + 19 tokens; each pair gives two KTO rows
    prompts = [row["prompt"][0]["content"] for row in builtin.build_pairs(8, 4, seed=0)["train"]]
    assert train["emptied"] == 2 * sum(len(p) + 19 >= 70 for p in prompts) > 0
    assert train["labels"]["desirable"] == train["labels"]["undesirable"] == 8


def test_table_for_local_data_with_a_column_mapping(tmp_path, capsys):
    path = tmp_path / "pairs.jsonl"
    rows = [{"q": "aaaa", "good": "bbbbbb", "bad": "cc"}, {"q": "dd", "good": "e", "bad": "fffff"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    eval_path = tmp_path / "eval.jsonl"
    eval_path.write_text(json.dumps({"q": "dd", "good": "x", "bad": "y"}) + "\n")
    assert (
        check_data.main(
            [
                "model=tiny-random",
                "dataset=local",
                f"dataset.path={path}",
                f"dataset.eval_path={eval_path}",
                "dataset.columns.prompt=q",
                "dataset.columns.chosen=good",
                "dataset.columns.rejected=bad",
                "train.max_length=10",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "Data check: dataset=local model=tiny-random method=dpo" in table
    assert "paired, plain text, train.max_length=10" in table
    assert "length bias (train): chosen longer in 50.0% of pairs, mean chosen - rejected = +0.00 tokens" in table
    assert "eval prompts also in train: 1" in table


def test_bad_input_exits_2_with_the_message_from_a_fresh_process(tmp_path):
    bad = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "check_data.py"),
            "model=tiny-random",
            "dataset=local",
            f"dataset.path={tmp_path / 'missing.jsonl'}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert bad.returncode == 2 and "missing.jsonl: no such file or folder" in bad.stderr and bad.stdout == ""
    typo = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_data.py"), "dataset.num_trian=3"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert typo.returncode == 2 and "num_trian" in typo.stderr


def test_a_mixture_is_reported_whole_and_per_source(tmp_path, capsys):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "".join(json.dumps({"prompt": f"P{i}", "chosen": "yes", "rejected": "no"}) + "\n" for i in range(20))
    )
    overrides = ["model=tiny-random", "dataset=mix", f"dataset.sources.1.path={path}"]
    overrides += ["+dataset.sources.0.num_train=64", "+dataset.sources.0.num_eval=4"]
    assert check_data.main([*overrides, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    builtin, local = report["sources"]
    assert (builtin["name"], local["name"], local["format"]) == ("builtin", "local", "local")
    assert local["available"] == {"train": 18, "eval": 2} and local["splits"]["eval"]["rows"] == 2
    assert builtin["splits"]["train"]["rows"] + local["splits"]["train"]["rows"] == report["splits"]["train"]["rows"]
    assert builtin["share"] == 0.75 and report["eval_prompts_in_train"] == 0
    assert local["splits"]["train"]["tokens"]["prompt"]["max"] < builtin["splits"]["train"]["tokens"]["prompt"]["max"]
    assert check_data.main(overrides) == 0
    table = capsys.readouterr().out
    assert "mixture of 2 sources:" in table and "[1] local train: " in table
