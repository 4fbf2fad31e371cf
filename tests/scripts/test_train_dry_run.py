"""scripts/train.py dry_run=true: the memory estimate through the real launcher, for a model that is not here."""

import json

from tests.conftest import run_train


def test_dry_run_prints_the_estimate_loads_nothing_and_keeps_no_run_directory(run_dir):
    # llama3-8b is neither downloaded nor reachable (HF_HUB_OFFLINE=1): any attempt to load it would fail.
    result = run_train("model=llama3-8b", "peft=lora", "hardware=40gb", "dry_run=true", f"hydra.run.dir={run_dir}")
    for part in (
        "memory estimate: dpo on llama3-8b",
        "37 GiB for the training step",
        "no checkpointing",
        "chosen: micro-batch",
        "weights (bf16)",
        "total",
    ):
        assert part in result.stdout, part
    assert not run_dir.exists()


def test_dry_run_that_fits_nowhere_fails_and_leaves_an_existing_directory_alone(run_dir):
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text('{"mine": 1}')
    result = run_train(
        "model=llama3-8b", "peft=none", "hardware=24gb", "dry_run=true", f"hydra.run.dir={run_dir}", check=False
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "does not fit in 22 GiB" in output and "peft=lora or peft=qlora" in output
    assert json.loads((run_dir / "metrics.json").read_text()) == {"mine": 1}


def test_dry_run_keeps_a_directory_whose_log_holds_an_earlier_run(tmp_path, monkeypatch):
    from prefopt import console, memory

    (tmp_path / ".hydra").mkdir()
    (tmp_path / "train.log").write_text("this process's own import lines\n")
    monkeypatch.setattr(console, "log_had_lines_before_this_run", False)
    assert memory._hydra_only(tmp_path)  # only what this job wrote: removed after the dry run
    monkeypatch.setattr(console, "log_had_lines_before_this_run", True)
    assert not memory._hydra_only(tmp_path)  # an earlier run's log: kept
    (tmp_path / "config.yaml").write_text("{}")
    monkeypatch.setattr(console, "log_had_lines_before_this_run", False)
    assert not memory._hydra_only(tmp_path)
