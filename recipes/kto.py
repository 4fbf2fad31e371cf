"""KTO with trl.KTOTrainer (`method=kto`): unpaired desirable/undesirable answers; pairs are unpaired for it."""

from trl import KTOConfig, KTOTrainer

from prefopt.ref_cache import ContentKeyedReferenceCache
from prefopt.trl_args import make_config

DATA_FORMAT = "unpaired"  # prompt, completion, label
USES_REFERENCE = True


class KTOTrainerWithCache(ContentKeyedReferenceCache, KTOTrainer):
    """TRL's KTOTrainer, whose precomputed reference log-probs are reused across runs and sweep jobs."""


def build_config(cfg) -> KTOConfig:
    return make_config(KTOConfig, cfg)


def build_trainer(cfg, *, model, ref_model, tokenizer, train_dataset, eval_dataset, peft_config, callbacks):
    return KTOTrainerWithCache(
        model=model,
        ref_model=ref_model,
        args=build_config(cfg),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
