"""KTO on TRL's KTOTrainer (`make train-kto`): desirable/undesirable answers; pairs are unpaired for it."""

from trl import KTOConfig

from prefopt.recipe import Recipe
from prefopt.trainers import FastKTOTrainer


def build_trainer(cfg, *, args, model, ref_model, tokenizer, train_dataset, eval_dataset, peft_config, callbacks):
    return FastKTOTrainer(  # TRL's KTOTrainer with packed rows, a completion-only LM head on CPU, cached references
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
        share_prompt=cfg.method.get("share_prompt", True),  # rows packed around their common prefix
        sft_weight=cfg.method.get("sft_weight", 0.0),  # + weight * NLL of the desirable completions
    )


RECIPE = Recipe(
    config_class=KTOConfig,
    build_trainer=build_trainer,
    own_keys=("share_prompt", "sft_weight"),  # read by build_trainer above, not config fields
    data_format="unpaired",  # prompt, completion, label
    uses_reference=True,
    logged_metrics=("rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected", "kl"),
    fused_lm_head=True,
)
