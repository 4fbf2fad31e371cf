"""SimPO and CPO with trl.experimental.cpo.CPOTrainer (`method=simpo`, `method=cpo`): no reference model.

Both are one trainer: `loss_type: simpo` with `cpo_alpha: 0` is SimPO (length-normalized log-probs and a
target margin), `loss_type: sigmoid` with `cpo_alpha: 1` is CPO (summed log-probs plus an SFT term on chosen).
"""

from trl.experimental.cpo import CPOConfig, CPOTrainer

from prefopt.trl_args import make_config

DATA_FORMAT = "paired"  # prompt, chosen, rejected
USES_REFERENCE = False


def build_config(cfg) -> CPOConfig:
    return make_config(CPOConfig, cfg)


def build_trainer(cfg, *, model, ref_model, tokenizer, train_dataset, eval_dataset, peft_config, callbacks):
    return CPOTrainer(
        model=model,
        args=build_config(cfg),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
