"""SFT on TRL's SFTTrainer (`make train-sft`): the completions' negative log-likelihood, the prompt masked out.

Run it before DPO/IPO/KTO so the preference stage starts from (and is measured against) a model that already
answers in the data's format: `make train-sft-dpo` runs both stages (docs/methods.md).
"""

from trl import SFTConfig

from prefopt.recipe import Recipe, no_fixed_start
from prefopt.trainers import FastSFTTrainer


def build_trainer(cfg, *, args, model, ref_model, tokenizer, train_dataset, eval_dataset, peft_config, callbacks):
    return FastSFTTrainer(  # TRL's SFTTrainer with packed rows and, on CPU, an LM head on completion tokens only
        model=model,
        args=args,
        train_dataset=train_dataset,  # prompt, completion: the loss covers the completion tokens only
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
        share_prompt=cfg.method.get("share_prompt", True),  # one row per batch, the common system prompt once
    )


RECIPE = Recipe(
    config_class=SFTConfig,
    build_trainer=build_trainer,
    data_format="sft",  # prompt, completion; pairs give prompt + chosen
    uses_reference=False,
    loss_at_start=no_fixed_start,  # the NLL of the data under the starting model
    # SFTTrainer's per-batch metrics: the mean entropy of the next-token distribution and the share of completion
    # tokens that are the model's top-1 prediction, on completion tokens; num_tokens counts every token trained on.
    logged_metrics=("entropy", "mean_token_accuracy", "num_tokens"),
    fused_lm_head=True,  # TRL's chunked head (or prefopt.lm_head on CPU): the logits are never held whole
    own_keys=("share_prompt",),  # read by build_trainer above, not an SFTConfig field
)
