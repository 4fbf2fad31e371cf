"""make eval, make merge, make eval-harness and make pairs run= on a run whose model/ is damaged or missing: each stops
with exit status 2 and a message naming the file and what to do, before any model loads (prefopt.run_files)."""

import shutil
import sys

import pytest

from tests.conftest import load_script
from tests.prefopt.evaluation.test_runs import fake_lora_run

COMMANDS = {
    "evaluate": lambda run: load_script("scripts/evaluate.py").main([str(run)]),
    "eval_harness": lambda run: load_script("scripts/eval_harness.py").main([str(run), "--tasks", "ifeval"]),
    "make_pairs": lambda run: load_script("scripts/make_pairs.py").main([f"run={run}", "num_prompts=2"]),
    "merge": lambda run: _merge(run),
}


def _merge(run):
    argv = sys.argv
    sys.argv = ["scripts/merge.py", str(run)]
    try:
        return load_script("scripts/merge.py").main()
    finally:
        sys.argv = argv


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    fake_lora_run(run)
    return run


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("fault", ["truncated weights", "no model/"])
def test_a_damaged_or_missing_model_stops_the_command_naming_the_file_and_what_to_do(
    finished_run, tmp_path, capsys, command, fault
):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    weights = run / "model" / "adapter_model.safetensors"
    if fault == "no model/":
        shutil.rmtree(run / "model")
        expected = f"{run} has no model/: the run did not finish training (see its train.log)."
    else:
        with open(weights, "r+b") as f:
            f.truncate(weights.stat().st_size // 2)  # an interrupted copy
        expected = f"{weights} holds {weights.stat().st_size:,} bytes, its safetensors header describes"
    assert COMMANDS[command](run) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    if fault != "no model/":
        assert f"No intact checkpoint is in {run}: copy model/ again from where the run was trained." in err
    assert not (run / "eval.json").exists() and not (run / "merged").exists()
