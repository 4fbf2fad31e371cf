"""Online DPO with the verifier: `make train-online-dpo` or `python scripts/online_dpo.py model=tiny-random logger=none`.

Hydra overrides for conf/online_dpo.yaml, which is conf/train.yaml plus `online:` and `reward:` (`online.rounds=5`,
`online.samples_per_prompt=8`, `reward.model=outputs/rm/<model>/<time>`, `peft=none`, `logger=none`). Writes a
run directory: round-<k>/ per round, rounds.csv/.md/.png, model/, metrics.json and eval.json (docs/online-dpo.md).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import prefopt.console  # isort: skip  (first: what libraries log while importing reaches train.log)
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from prefopt.errors import RecipeError
from prefopt.online_dpo import OnlineDPO
from prefopt.tracking import finish_wandb, start_wandb
from prefopt.trl_args import run_name

log = logging.getLogger("train")


@hydra.main(config_path="../conf", config_name="online_dpo", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    prefopt.console.setup(cfg)  # third-party output: train.log only, unless verbose=true
    try:
        online = OnlineDPO(cfg, run_dir)  # checks the config before anything loads
        log.info(
            "online %s on %s: %d rounds of %d prompts x %d answers, %d steps each; run directory %s",
            cfg.method.name,
            cfg.model.name,
            online.settings.rounds,
            online.settings.prompts_per_round,
            online.settings.samples_per_prompt,
            online.settings.steps_per_round,
            run_dir,
        )
        start_wandb(cfg, run_dir, "online-" + run_name(cfg))
        online.run()
        finish_wandb(0)
    except RecipeError as exc:
        finish_wandb(1)
        log.error("%s", exc)
        sys.exit(exc.exit_code)
    except BaseException:
        finish_wandb(1)
        raise


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
