"""DPO and IPO on TRL's DPOTrainer (`make train-dpo`, `make train-ipo`: the same trainer, `loss_type: [ipo]`).

Copy it to start your own: `make new-recipe from=dpo name=my_dpo`, then edit build_trainer or RECIPE.
"""

from trl import DPOConfig

from prefopt.recipe import PAIR_METRICS, Recipe, sigmoid_dpo_start
from prefopt.trainers import FastDPOTrainer


def build_trainer(cfg, *, args, model, ref_model, tokenizer, train_dataset, eval_dataset, peft_config, callbacks):
    return FastDPOTrainer(
        model=model,
        ref_model=ref_model,  # None with LoRA: the base with the adapter disabled is the reference
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
        share_prompt=cfg.method.get("share_prompt", True),  # one row per pair, its prompt computed once
    )


RECIPE = Recipe(
    config_class=DPOConfig,
    build_trainer=build_trainer,
    data_format="paired",  # prompt, chosen, rejected
    uses_reference=True,
    loss_at_start=sigmoid_dpo_start,  # ln 2 for loss_type [sigmoid]
    logged_metrics=(*PAIR_METRICS, "logits/chosen", "logits/rejected", "entropy", "mean_token_accuracy"),
    fused_lm_head=True,  # TRL's chunked head (or prefopt.lm_head on CPU): the logits are never held whole
    own_keys=("share_prompt",),  # read by build_trainer above, not a DPOConfig field
)
