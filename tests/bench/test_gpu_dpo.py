"""bench/gpu_dpo.py on a CPU with the tiny shape: the plain-TRL and recipe rows, and what each row ran with."""

import json
import subprocess
import sys

from tests.conftest import REPO


def test_plain_and_recipe_rows_with_their_settings():
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_dpo.py"), "--shape", "tiny", "--variants", "lora", "--steps", "3",
         "--prompt-len", "16", "--answer-len", "16", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=True)
    rows = {r["row"]: r for r in json.loads(result.stdout.splitlines()[-1])["results"]}
    plain, recipe = rows["plain"], rows["recipe"]
    assert plain["activation_checkpointing"] and not plain["share_prompt"]  # TRL's defaults
    # The recipe: shared-prompt rows, and the preset's choice for a tiny model in 40 GiB: no checkpointing, 4 x 1.
    assert recipe["share_prompt"] and not recipe["activation_checkpointing"]
    assert (recipe["micro_batch"], recipe["accumulation"]) == (4, 1)
    for row in (plain, recipe):
        assert row["tokens_per_s"] > 0 and row["s_per_step"] > 0 and row["peak_gib"] is None
