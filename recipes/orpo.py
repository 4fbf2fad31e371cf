"""ORPO on TRL's experimental ORPOTrainer (`make train-orpo`): SFT plus an odds-ratio term, no reference model."""

from trl.experimental.orpo import ORPOConfig

from prefopt.recipe import PAIR_METRICS, Recipe
from prefopt.trainers_experimental import FastORPOTrainer


def build_trainer(cfg, *, args, model, ref_model, tokenizer, train_dataset, eval_dataset, peft_config, callbacks):
    return FastORPOTrainer(  # TRL's ORPOTrainer with shared-prompt rows and an LM head on scored tokens only
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
        share_prompt=cfg.method.get("share_prompt", True),  # one row per pair, its prompt computed once
        completion_only_loss=cfg.method.get("completion_only_loss", False),  # SFT term on the answers only
    )


RECIPE = Recipe(
    config_class=ORPOConfig,
    build_trainer=build_trainer,
    own_keys=("share_prompt", "completion_only_loss"),  # read by build_trainer above, not config fields
    data_format="paired",
    uses_reference=False,  # its rewards are beta * log-probs, not log-ratios
    logged_metrics=(*PAIR_METRICS, "nll_loss", "log_odds_ratio", "log_odds_chosen"),
)
