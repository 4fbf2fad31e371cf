"""bench/gpu_dpo.py on a CPU with the tiny shape: the plain-TRL, recipe and lever rows, what each ran with, and
that every row trains the same steps (the same loss) whatever it changes for speed."""

import gc
import json
import sys

import pytest
from transformers import PreTrainedModel

from tests.conftest import load_script

TINY_ARGS = ["--shape", "tiny", "--variants", "lora", "--steps", "3", "--prompt-len", "16", "--answer-len", "16"]


@pytest.fixture(scope="module")
def gpu_bench():
    return load_script("bench/gpu_dpo.py")


def test_rows_with_their_settings_and_the_same_training(gpu_bench, tmp_path, monkeypatch, capsys):
    out = tmp_path / "rows.jsonl"
    names = [
        "plain",
        "recipe",
        "plain+no_ckpt",
        "plain+ckpt_half",
        "plain+micro1",
        "plain+share_prompt",
        "plain+ref_precomputed",
        "plain+liger",
        "plain+share_prompt+micro1+no_ckpt",
        "recipe+ref_precomputed",
    ]
    monkeypatch.setattr(sys, "argv", ["gpu_dpo.py", *TINY_ARGS, "--rows", ",".join(names), "--out", str(out)])
    gpu_bench.main()
    printed = capsys.readouterr().out
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["row"] for line in lines] == names  # one line per row, written as each ends
    rows = {line["row"]: line for line in lines}
    # Liger needs Triton: on a CPU its row fails, says why, and the rows after it still run.
    assert "liger" in rows["plain+liger"]["error"].lower()
    assert "plain+liger" in printed and "failed" in printed
    # (decoder layers trained with checkpointing, as the trainer set them; micro-batch; accumulation; shared rows)
    settings = {
        name: (r["checkpointed_layers"], r["micro_batch"], r["accumulation"], r["share_prompt"])
        for name, r in rows.items()
        if "error" not in r
    }
    assert settings == {
        "plain": ("2/2", 4, 1, False),  # TRL's defaults
        # The recipe: shared-prompt rows, and the preset's choice for a tiny model in 40 GiB: 4 x 1, no checkpointing.
        "recipe": ("0/2", 4, 1, True),
        "plain+no_ckpt": ("0/2", 4, 1, False),
        "plain+ckpt_half": ("1/2", 4, 1, False),
        "plain+micro1": ("2/2", 1, 4, False),
        "plain+share_prompt": ("2/2", 4, 1, True),
        "plain+ref_precomputed": ("2/2", 4, 1, False),
        "plain+share_prompt+micro1+no_ckpt": ("0/2", 1, 4, True),
        "recipe+ref_precomputed": ("0/2", 4, 1, True),
    }
    switched_on = {name: r["trl_switches"] for name, r in rows.items() if r.get("trl_switches")}
    assert switched_on == {
        name: ["precompute_ref_log_probs"] for name in ("plain+ref_precomputed", "recipe+ref_precomputed")
    }
    plain = rows["plain"]
    for name in settings:
        row = rows[name]
        assert row["tokens_per_s"] > 0 and row["s_per_step"] > 0 and row["peak_gib"] is None, name
        assert row["train_loss"] == pytest.approx(plain["train_loss"], abs=1e-5), name  # levers change speed only
    assert "lora: recipe / plain TRL = " in printed and "lora: plain+no_ckpt / plain TRL = " in printed


def test_an_unknown_row_fails_before_any_model_loads(gpu_bench):
    with pytest.raises(SystemExit, match=r"plain\+fast.*no_ckpt"):  # names the bad row and the levers there are
        gpu_bench.check_rows(["plain", "plain+fast"])
    with pytest.raises(SystemExit, match=r"recipe\+no_ckpt"):  # the recipe's preset owns checkpointing
        gpu_bench.check_rows(["recipe+no_ckpt"])
    gpu_bench.check_rows(["plain+share_prompt+no_ckpt", "recipe+ref_precomputed", "recipe+liger"])


def test_rows_release_their_model(gpu_bench):
    """Each row loads its own 8B model: one left behind by an earlier row would run the next out of GPU memory."""

    def live_models() -> int:
        gc.collect()
        return sum(isinstance(o, PreTrainedModel) for o in gc.get_objects())

    before = live_models()
    for row in ("plain", "recipe", "plain+liger"):  # the last fails: its model must go too
        result = gpu_bench.run(
            row, "lora", steps=3, pairs_per_step=4, prompt_len=8, answer_len=8, shape=gpu_bench.TINY, budget_gib=40
        )
        assert ("error" in result) == (row == "plain+liger"), result
        assert live_models() == before, row


def test_orpo_and_kto_rows_beside_dpos_train_the_same_steps(gpu_bench, tmp_path, monkeypatch, capsys):
    out = tmp_path / "rows.jsonl"
    rows = "plain,recipe"
    argv = ["gpu_dpo.py", *TINY_ARGS, "--methods", "orpo,kto", "--rows", rows, "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    gpu_bench.main()
    printed = capsys.readouterr().out
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["method"], line["row"]) for line in lines] == [
        (m, r) for m in ("orpo", "kto") for r in rows.split(",")
    ]
    for line in lines:
        assert "error" not in line, line
        plain = next(p for p in lines if (p["method"], p["row"]) == (line["method"], "plain"))
        assert line["train_loss"] == pytest.approx(plain["train_loss"], abs=1e-5), line  # levers change speed only
        assert line["share_prompt"] == (line["row"] == "recipe"), line
        # KTO trains on each pair's two unpaired rows: 8 rows per step for 4 pairs.
        assert line["micro_batch"] * line["accumulation"] == (8 if line["method"] == "kto" else 4), line
    assert "orpo lora: recipe / plain TRL = " in printed and "kto lora: recipe / plain TRL = " in printed


def test_reference_levers_need_a_method_with_a_reference(gpu_bench):
    with pytest.raises(SystemExit, match=r"orpo trains without a reference"):
        gpu_bench.check_rows(["plain+ref_precomputed"], ("dpo", "orpo"))
    with pytest.raises(SystemExit, match=r"unknown method 'simpo'"):
        gpu_bench.check_rows(["plain"], ("simpo",))
    gpu_bench.check_rows(["recipe+ref_precomputed"], ("dpo", "kto"))
