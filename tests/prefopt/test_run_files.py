"""prefopt.run_files.check_model: a run's model/ missing or damaged is named before anything loads it, with what to do.

The commands that load model/ (make eval, merge, eval-harness, pairs run=) stopping on it:
tests/scripts/test_damaged_run.py.
"""

import json
import shutil
import signal
import subprocess
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from prefopt.checkpoints import CheckpointGuard
from prefopt.errors import RecipeError
from prefopt.run_files import LOG_HISTORY_FILE, METRICS_FILE, MODEL_MANIFEST, check_model, record_model

OVERRIDES = ["method=dpo", "model=tiny-random", "train.max_steps=4"]


@pytest.fixture(autouse=True)
def _restore_signal_handlers():  # CheckpointGuard, which marks the checkpoints, takes SIGINT and SIGTERM
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def _weights(folder, step):
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"lora_A": torch.full((4, 4), float(step))}, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text('{"r": 4}')


def _run(run_dir, checkpoint_steps=(2, 4), final_step=4, manifest=True, finished=True):
    """A run directory as train.py leaves it: checkpoints (each the weights of its step), model/ (the final weights),
    metrics.json, log_history.json, Hydra's record of the overrides."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in OVERRIDES))
    for step in checkpoint_steps:
        _weights(run_dir / f"checkpoint-{step}", step)
        state = SimpleNamespace(global_step=step, is_world_process_zero=True)
        CheckpointGuard().on_save(SimpleNamespace(output_dir=str(run_dir)), state, None)
    if not finished:
        return run_dir
    _weights(run_dir / "model", final_step)
    if manifest:
        record_model(run_dir, final_step)
    (run_dir / METRICS_FILE).write_text(json.dumps({"status": "completed"}))
    (run_dir / LOG_HISTORY_FILE).write_text(json.dumps({"log_history": [{"loss": 0.6, "step": final_step}]}))
    return run_dir


def _truncate(path, size=40):
    with open(path, "r+b") as f:
        f.truncate(size)


def _message(run_dir) -> str:
    with pytest.raises(RecipeError) as raised:
        check_model(run_dir)
    return str(raised.value)


def test_an_intact_model_passes_and_its_manifest_lists_every_file(tmp_path):
    run = _run(tmp_path / "run")
    check_model(run)
    recorded = json.loads((run / "model" / MODEL_MANIFEST).read_text())
    assert recorded["step"] == 4 and sorted(recorded["files"]) == ["adapter_config.json", "adapter_model.safetensors"]


@pytest.mark.parametrize("manifest", [True, False], ids=["model/ with its manifest", "a model/ saved without one"])
def test_damaged_weights_are_named_and_the_final_checkpoint_copy_restores_them(tmp_path, manifest):
    run = _run(tmp_path / "run", manifest=manifest)
    damaged, copy = run / "model" / "adapter_model.safetensors", run / "checkpoint-4" / "adapter_model.safetensors"
    _truncate(damaged)
    message = _message(run)
    assert message.startswith(f"{damaged} ")
    assert message.endswith(
        f"{run / 'checkpoint-4'} holds an intact copy of it: copy it back with\n  cp {copy} {damaged}"
    )
    subprocess.run(message.splitlines()[-1].split(), check=True)  # the command, as printed
    check_model(run)


def test_with_no_intact_copy_of_the_file_the_message_gives_the_command_that_trains_from_the_newest_checkpoint(
    tmp_path,
):
    run = _run(tmp_path / "run", checkpoint_steps=(2, 4))
    _truncate(run / "checkpoint-4" / "adapter_model.safetensors")  # the final checkpoint is damaged too
    model_file = run / "model" / "adapter_model.safetensors"
    data = bytearray(model_file.read_bytes())
    data[-1] ^= 0x01  # bit rot: only the checksum sees it
    model_file.write_bytes(bytes(data))
    message = _message(run)
    assert message.startswith(f"{model_file} has other bytes than when it was saved")
    assert message.endswith(
        "Copy model/ again from where the run was trained, or train again from checkpoint-2, the newest intact "
        "checkpoint (step 2), into a new directory with\n"
        f"  python scripts/train.py {' '.join(OVERRIDES)} train.resume={run / 'checkpoint-2'} "
        f"hydra.run.dir={tmp_path / 'run-from-checkpoint-2'}"
    )
    assert (run / "checkpoint-4" / "adapter_model.safetensors").exists()  # nothing deleted


def test_a_missing_model_names_what_to_do(tmp_path):
    unfinished = _run(tmp_path / "unfinished", finished=False)
    assert _message(unfinished) == (
        f"{unfinished} has no model/: the run did not finish training (see its train.log). Continue it from "
        f"checkpoint-4 with\n  python scripts/train.py {' '.join(OVERRIDES)} train.resume=auto "
        f"hydra.run.dir={unfinished}"
    )
    finished = _run(tmp_path / "finished")
    shutil.rmtree(finished / "model")
    assert _message(finished).startswith(f"{finished} has no model/ although the run completed. Copy model/ again")
    (finished / METRICS_FILE).write_text(json.dumps({"status": "stopped: nonfinite_loss"}))
    assert "ended with status 'stopped: nonfinite_loss' and saved none" in _message(finished)
