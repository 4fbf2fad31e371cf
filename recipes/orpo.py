"""ORPO with trl.experimental.orpo.ORPOTrainer (`method=orpo`): SFT plus an odds-ratio term, no reference model."""

from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from prefopt.trl_args import make_config

DATA_FORMAT = "paired"
USES_REFERENCE = False


def build_config(cfg) -> ORPOConfig:
    return make_config(ORPOConfig, cfg)


def build_trainer(cfg, *, model, ref_model, tokenizer, train_dataset, eval_dataset, peft_config, callbacks):
    return ORPOTrainer(
        model=model,
        args=build_config(cfg),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
