"""Two data-parallel processes on CPU (gloo) through the same `accelerate launch` path GPU users take."""

import json
import os
import subprocess
import sys
import textwrap

import torch

from tests.conftest import FAST, REPO, read_run

# Runs scripts/train.py unchanged, plus a callback that dumps each rank's trainable weights after training.
PROBE = textwrap.dedent("""
    import os, runpy, sys
    import torch
    from transformers import TrainerCallback
    import prefopt.callbacks

    class DumpWeights(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            weights = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
            torch.save(weights, os.path.join(os.environ["PROBE_DIR"], f"rank{os.environ['RANK']}.pt"))

    build = prefopt.callbacks.build_callbacks
    prefopt.callbacks.build_callbacks = lambda cfg, recipe: build(cfg, recipe) + [DumpWeights()]
    sys.argv = [os.path.join(os.environ["REPO"], "scripts", "train.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


def train_on_two_ranks(tmp_path, *overrides: str) -> tuple[dict, dict]:
    """scripts/train.py in 2 CPU ranks through `accelerate launch`; each rank's trainable weights after training."""
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    env = {**os.environ, "PROBE_DIR": str(tmp_path), "REPO": str(REPO), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            "conf/launcher/ddp.yaml",
            "--num_processes",
            "2",
            str(probe),
            *FAST,
            "train.max_steps=3",
            "eval_generation.enabled=false",
            *overrides,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys() and rank0
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0), "DDP did not keep the ranks in sync"
    assert any(t.abs().sum() > 0 for name, t in rank0.items() if "lora_B" in name), "no step was taken"
    return rank0, rank1


def test_two_ranks_train_in_sync_and_only_rank_0_writes(tmp_path):
    run_dir = tmp_path / "run"
    train_on_two_ranks(tmp_path, f"hydra.run.dir={run_dir}")

    metrics, config = read_run(run_dir)
    assert metrics["status"] == "completed"
    # 2 ranks x 8 pairs per step = 16 of the 32 training pairs: 3 steps are 1.5 epochs (one process: 0.75).
    history = json.loads((run_dir / "log_history.json").read_text())["log_history"]
    assert history[-1]["step"] == 3 and history[-1]["epoch"] == 1.5
    assert config["train"]["per_device_train_batch_size"] == 8
    log = (run_dir / "train.log").read_text()
    assert log.count("run directory:") == 1, "a rank other than 0 wrote to train.log"
