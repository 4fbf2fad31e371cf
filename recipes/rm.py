"""A reward model on TRL's RewardTrainer (`make train-rm`): a sequence classifier with one score per answer,
trained on the same pairs as DPO with the Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected)).

Score best-of-N pairs with the trained run: `make pairs ARGS="reward.model=outputs/rm/<model>/<time>"`.
"""

from trl import RewardConfig

from prefopt.recipe import Recipe
from prefopt.trainers import FastRewardTrainer


def build_trainer(cfg, *, args, model, ref_model, tokenizer, train_dataset, eval_dataset, peft_config, callbacks):
    return FastRewardTrainer(  # TRL's RewardTrainer, each pair scored in one row
        model=model,  # AutoModelForSequenceClassification, num_labels=1 (Recipe.model_class below)
        args=args,
        train_dataset=train_dataset,  # prompt, chosen, rejected: TRL scores prompt + each answer
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,  # task type SEQ_CLS: LoRA on the body, the new score head trained in full
        callbacks=callbacks,
        share_prompt=cfg.method.get("share_prompt", True),  # one row per pair, its prompt computed once
    )


RECIPE = Recipe(
    config_class=RewardConfig,
    build_trainer=build_trainer,
    own_keys=("share_prompt",),  # read by build_trainer above, not a config field
    data_format="paired",
    uses_reference=False,
    # RewardTrainer's per-batch metrics: accuracy = share of pairs with r(chosen) > r(rejected), margin = mean
    # r(chosen) - r(rejected), and the spread of the scores.
    logged_metrics=("accuracy", "margin", "min_reward", "mean_reward", "max_reward", "num_tokens"),
    fused_lm_head=True,  # a one-score head: no vocabulary-sized logits are ever held (the memory estimate)
    model_class="sequence_classification",
)
