"""DPO and IPO with trl.DPOTrainer (`method=dpo`, `method=ipo`: the same trainer, `loss_type: [ipo]`).

Copy it to start your own: `make new-recipe from=dpo name=my_dpo`, then edit build_trainer.
"""

from trl import DPOConfig, DPOTrainer

from recipes.trl_args import make_config

DATA_FORMAT = "paired"  # prompt, chosen, rejected
USES_REFERENCE = True


def build_config(cfg) -> DPOConfig:
    return make_config(DPOConfig, cfg)


def build_trainer(cfg, *, model, ref_model, tokenizer, train_dataset, eval_dataset, peft_config, callbacks):
    return DPOTrainer(
        model=model,
        ref_model=ref_model,  # None with LoRA: the base with the adapter disabled is the reference
        args=build_config(cfg),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
