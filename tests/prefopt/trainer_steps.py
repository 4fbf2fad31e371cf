"""One training batch through a trainer class, for comparing the recipes' trainers with TRL's own on the same
weights: loss, logged metrics and gradients."""

import torch

from prefopt.adapters import lora_config
from prefopt.models import load_model, load_tokenizer
from prefopt.run import trl_config


def one_step(
    trainer_class,
    cfg,
    train,
    recipe,
    attention: str | None = None,
    lm_head_inputs: list | None = None,
    batches: list | None = None,
):
    """Loss, logged metrics and trainable-weight gradients of the first training batch, from the same weights for
    every class; `attention` sets the attention implementation (sdpa, eager); `lm_head_inputs` collects the shape
    of every input of the model's LM head; `batches` collects the batch."""
    torch.manual_seed(0)  # the same LoRA initialization
    model = load_model(cfg.model, "fp32", seed=0, model_class=recipe.model_class)
    if attention is not None:
        model.set_attn_implementation(attention)
    if lm_head_inputs is not None:
        model.get_output_embeddings().register_forward_hook(lambda m, args, out: lm_head_inputs.append(args[0].shape))
    trainer = trainer_class(
        model=model,
        args=trl_config(cfg),
        train_dataset=train,
        processing_class=load_tokenizer(cfg.model),
        peft_config=lora_config(cfg.peft, recipe.model_class),
    )
    with torch.no_grad():  # LoRA's B starts at zero: move it so the policy differs from the reference
        generator = torch.Generator().manual_seed(1)
        for name, param in trainer.model.named_parameters():
            if "lora_B" in name:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
    trainer.model.train()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    if batches is not None:
        batches.append(batch)
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad for n, p in trainer.model.named_parameters() if p.grad is not None}
    # TRL's experimental trainers keep their metrics in _stored_metrics, the others in _metrics.
    stored = trainer._stored_metrics if hasattr(trainer, "_stored_metrics") else trainer._metrics
    return loss.item(), {k: v[-1] for k, v in stored["train"].items()}, grads


def assert_same_step(ours, trls, metric_rtol: float = 1e-4):
    """Our step equals TRL's: the loss, every metric TRL logged (relative, for metrics near 0 such as a random
    model's mean logits) and every gradient, to float rounding."""
    (loss, metrics, grads), (trl_loss, trl_metrics, trl_grads) = ours, trls
    assert abs(loss - trl_loss) <= 1e-5 * max(1.0, abs(trl_loss)), (loss, trl_loss)
    assert metrics.keys() == trl_metrics.keys() and metrics
    for key in metrics:
        assert abs(metrics[key] - trl_metrics[key]) <= metric_rtol * abs(trl_metrics[key]) + 1e-7, (
            key,
            metrics[key],
            trl_metrics[key],
        )
    assert grads.keys() == trl_grads.keys() and len(grads) > 4
    for name in grads:
        # fp32 sums in another order: entries near zero differ by ~1e-7
        torch.testing.assert_close(grads[name], trl_grads[name], rtol=1e-4, atol=5e-7)


def lora_trainer(trainer_class, cfg, train, model=None):
    """`trainer_class` on `cfg`'s tiny model (or `model`) with its LoRA adapter, TRL config and tokenizer."""
    return trainer_class(
        model=model if model is not None else load_model(cfg.model, "fp32", seed=0),
        args=trl_config(cfg),
        train_dataset=train,
        processing_class=load_tokenizer(cfg.model),
        peft_config=lora_config(cfg.peft),
    )
