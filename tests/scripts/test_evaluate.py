"""scripts/evaluate.py on run directories as train.py leaves them (tiny model, LoRA adapter moved off zero)."""

import json

from tests.conftest import load_script, offline_wandb_data
from tests.prefopt.evaluation.test_runs import fake_lora_run

QUICK = ["eval_generation.max_prompts=6", "eval_generation.max_new_tokens=6", "dataset.num_eval=8"]


def test_json_output_equals_eval_json_and_wandb_gets_an_eval_run(tmp_path, capsys):
    run = tmp_path / "run"
    fake_lora_run(run, *QUICK, "logger=wandb")
    assert load_script("scripts/evaluate.py").main([str(run), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout
    assert printed == json.loads((run / "eval.json").read_text())
    assert printed["written_by"] == "scripts/evaluate.py" and printed["method"] == "dpo"
    assert printed["pairs"]["num_pairs"] == 8 and printed["pairs"]["source"] == "prefopt.evaluation"
    assert 0.0 <= printed["pairs"]["reward_accuracy"] <= 1.0 and printed["pairs"]["loss"] > 0
    generation = printed["generation"]
    assert generation["num_prompts"] == 6 and len(generation["samples"]) == 6
    assert generation["wins"] + generation["losses"] + generation["ties"] == 6
    assert generation["kl_policy_reference"] != 0.0  # the adapter moved the policy away from the reference

    needles = (b"eval/samples", b"eval/judge/lc_win_rate", b"eval/pairs/reward_accuracy", b"dpo-tiny-random-beta0.1")
    data = offline_wandb_data(run, needles)
    for needle in needles:
        assert needle in data, needle


def test_existing_eval_json_is_kept_unless_forced_and_the_table_reports_samples(tmp_path, capsys):
    run = tmp_path / "run"
    fake_lora_run(run, *QUICK)
    (run / "eval.json").write_text('{"mine": 1}')
    evaluate = load_script("scripts/evaluate.py")

    assert evaluate.main([str(run)]) == 2
    assert "eval.json exists: pass --force" in capsys.readouterr().err
    assert json.loads((run / "eval.json").read_text()) == {"mine": 1}

    assert evaluate.main([str(run), "--force", "--num-samples", "2", "--temperature", "0.7"]) == 0
    table = capsys.readouterr().out
    for row in (
        "reward accuracy (8 pairs)",
        "pass rate (6 prompts, greedy)",
        "KL(policy || reference)",
        "win rate over reference (ties 1/2)",
        "pass rate (2 samples, T=0.7)",
    ):
        assert row in table, row
    written = json.loads((run / "eval.json").read_text())
    assert written["generation"]["sampled"]["num_prompts"] == 12 and written["settings"]["temperature"] == 0.7


def test_a_folder_without_a_run_is_a_clear_error(tmp_path, capsys):
    assert load_script("scripts/evaluate.py").main([str(tmp_path)]) == 2
    assert f"{tmp_path} is not a run directory: no config.yaml" in capsys.readouterr().err


def test_prompts_of_your_own_go_to_their_own_file_and_eval_json_is_untouched(tmp_path, capsys):
    run = tmp_path / "run"
    fake_lora_run(run, *QUICK)
    (run / "eval.json").write_text('{"mine": 1}')
    prompts = tmp_path / "transfer.jsonl"
    rows = [
        {"kind": "sum", "prompt": "What is 71 + 85? Reply with only the number.", "answer": "156"},
        {"kind": "uppercase", "prompt": "Write the word 'meadowlark' in capital letters.", "answer": "MEADOWLARK"},
        {"kind": "count", "prompt": "Name exactly 6 colors, separated by commas, and nothing else.", "n": 6},
    ]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    evaluate = load_script("scripts/evaluate.py")
    assert evaluate.main([str(run), "--prompts", str(prompts), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((run / "eval-transfer.json").read_text())
    assert printed["prompts"] == str(prompts) and printed["generation"]["num_prompts"] == 3
    assert [s["prompt"] for s in printed["generation"]["samples"]] == [r["prompt"] for r in rows]
    assert json.loads((run / "eval.json").read_text()) == {"mine": 1}
    assert evaluate.main([str(run), "--prompts", str(prompts)]) == 2
    assert "eval-transfer.json exists: pass --force" in capsys.readouterr().err
    prompts.write_text(json.dumps({"kind": "sum", "prompt": "What is 1 + 1?"}) + "\n")
    assert evaluate.main([str(run), "--prompts", str(prompts), "--force"]) == 2
    assert "line 1: a sum prompt needs 'answer'" in capsys.readouterr().err


def test_a_judge_given_on_the_command_line_judges_and_its_key_is_never_written(tmp_path, capsys, monkeypatch):
    from prefopt.evaluation import llm_judge
    from tests.prefopt.evaluation.judge_server import JudgeServer, TinyJudgeModel

    monkeypatch.setattr(llm_judge, "RETRY_WAIT_S", 0.01)
    key = "sk-eval-test-key-789"
    monkeypatch.setenv("EVAL_JUDGE_KEY", key)
    run = tmp_path / "run"
    fake_lora_run(run, *QUICK)
    evaluate = load_script("scripts/evaluate.py")
    judge = ["judge=llm", "judge.model=tiny-judge", "judge.api_key_env=EVAL_JUDGE_KEY", "judge.max_retries=0"]
    with JudgeServer(TinyJudgeModel(), key=key) as server:
        assert evaluate.main([str(run), "--json", *judge, f"judge.base_url={server.base_url}"]) == 0
    out, err = capsys.readouterr()
    printed = json.loads(out)
    assert (
        server.chat_requests == 12 and printed["judge"]["name"] == "llm" and printed["judge"]["model"] == "tiny-judge"
    )
    assert printed["judge"]["judgments"] == 12 and printed["judge"]["unparsed"] == 0
    assert printed["judge"]["verifier_agreement_pairs"] is not None  # the built-in task: checked against the verifier
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and all(s["llm_verdict_policy_first"] in ("win", "loss") for s in samples)
    written = "".join(
        p.read_text(errors="replace") for p in run.rglob("*") if p.is_file() and p.suffix != ".safetensors"
    )
    assert key not in written + out + err

    # The endpoint gone: `make eval` stops before answering anything and the eval.json written above is kept.
    before = (run / "eval.json").read_text()
    assert evaluate.main([str(run), "--force", *judge, f"judge.base_url={server.base_url}"]) == 2
    assert "gave no answer in 1 attempt (judge.max_retries=0): cannot connect" in capsys.readouterr().err
    assert (run / "eval.json").read_text() == before

    # The endpoint failing while it judges: the answers and the verifier's numbers are written, the judge's error
    # is said, and the exit status is 1.
    with JudgeServer(TinyJudgeModel(), fail_first=1000) as server:
        assert evaluate.main([str(run), "--force", *judge, f"judge.base_url={server.base_url}"]) == 1
    err = capsys.readouterr().err
    assert "the judge failed" in err and "run the same command again to add the judge" in err
    written = json.loads((run / "eval.json").read_text())
    assert "HTTP 503" in written["judge"]["error"] and written["generation"]["num_prompts"] == 6


def test_a_bad_judge_on_the_command_line_stops_before_any_model_loads(tmp_path, capsys):
    run = tmp_path / "run"
    fake_lora_run(run, *QUICK)
    evaluate = load_script("scripts/evaluate.py")
    assert evaluate.main([str(run), "judge.modle=x"]) == 2
    assert (
        "judge.modle: judge=auto has no such key; its keys are name, model, batch_size, max_length"
        in capsys.readouterr().err
    )
    assert evaluate.main([str(run), "judge=reward_model", f"judge.model={tmp_path / 'rm'}"]) == 2
    assert f"judge.model={tmp_path / 'rm'} does not exist: expected a `make train-rm` run" in capsys.readouterr().err
    assert evaluate.main([str(run), "method.beta=0.2"]) == 2
    assert "only judge overrides are taken" in capsys.readouterr().err
    assert not (run / "eval.json").exists() and not (run / "samples.jsonl").exists()
