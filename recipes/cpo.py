"""SimPO and CPO on TRL's experimental CPOTrainer (`make train-simpo`, `make train-cpo`): no reference model.

One trainer: `loss_type: simpo` with `cpo_alpha: 0` is SimPO (length-normalized log-probs and a target margin),
`loss_type: sigmoid` with `cpo_alpha: 1` is CPO (summed log-probs plus an SFT term on chosen).
"""

from trl.experimental.cpo import CPOConfig

from prefopt.recipe import PAIR_METRICS, Recipe
from prefopt.trainers_experimental import FastCPOTrainer


def build_trainer(cfg, *, args, model, ref_model, tokenizer, train_dataset, eval_dataset, peft_config, callbacks):
    return FastCPOTrainer(  # TRL's CPOTrainer with shared-prompt rows and an LM head on scored tokens only
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
        share_prompt=cfg.method.get("share_prompt", True),  # one row per pair, its prompt computed once
    )


RECIPE = Recipe(
    config_class=CPOConfig,
    build_trainer=build_trainer,
    own_keys=("share_prompt",),  # read by build_trainer above, not a config field
    data_format="paired",  # prompt, chosen, rejected
    uses_reference=False,
    logged_metrics=(*PAIR_METRICS, "nll_loss"),
)
