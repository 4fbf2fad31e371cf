"""TRL's trainers with the same losses and metrics, made faster; the recipes build them.

FastDPOTrainer (recipes/dpo.py: DPO, IPO, DPO+SFT) computes each pair's prompt once (prefopt.shared_prompt), projects
only completion tokens through the LM head without Triton (prefopt.lm_head), caches precomputed reference log-probs by
content (prefopt.ref_cache) and batches pairs of similar length (PairLengthSampler). FastKTOTrainer packs its rows
around their common prefix, projects only completion tokens and caches reference log-probs the same way.
FastSFTTrainer (recipes/sft.py) packs and projects only completion tokens too; FastRewardTrainer scores each pair in
one row. ORPO and CPO/SimPO, TRL's experimental trainers: prefopt.trainers_experimental.

Every fast path is a switch (`share_prompt`, method.share_prompt in the configs); where a model cannot take it (an
attention kernel without custom masks, sliding-window or MoE layers) the trainer says so in one log line and keeps
TRL's layout.
"""

import contextlib
import logging

import torch
from accelerate.utils import is_peft_model
from torch.utils.data import Sampler
from trl import DPOTrainer, KTOTrainer, RewardTrainer, SFTTrainer

from prefopt.lm_head import add_completion_lm_head, triton_head
from prefopt.ref_cache import ContentKeyedReferenceCache
from prefopt.shared_prompt import (
    add_shared_prompt_backbone,
    joint_rows,
    pack_sequences,
    pair_answers,
    rows_computed_as,
    shared_prompt_rows,
)

PAIR_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")  # TRL's tokenized pairs

logger = logging.getLogger(__name__)


class FastDPOTrainer(ContentKeyedReferenceCache, DPOTrainer):
    """TRL's DPOTrainer, with the same loss and metrics, and four changes that only make it faster:

    - `share_prompt`: each pair is one row, its prompt computed once for both answers (prefopt.shared_prompt);
    - precomputed reference log-probs are cached by content, so sweeps and reruns reuse them (prefopt.ref_cache);
    - without Triton (CPU), the log-probs come from prefopt.lm_head, which projects completion tokens only;
    - `train_sampling_strategy: group_by_length` works (TRL 1.16's DPOTrainer fails with it: transformers looks
      for an `input_ids` column): batches of pairs of similar length, see PairLengthSampler.
    """

    def __init__(self, *args, share_prompt: bool = True, **kwargs):
        self._models_patched = False
        self.share_prompt = share_prompt
        super().__init__(*args, **kwargs)
        self._patch_models()

    def _precompute_ref_logps(self, dataset, name, batch_size):
        self._patch_models()  # precompute_ref_log_probs runs inside TRL's __init__, after it patched its head
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def _patch_models(self):
        if self._models_patched:
            return
        # The fields TRL's __init__ requested: log-probs for the loss, the rest for its logged metrics.
        outputs = ("log_probs", "entropy", "mean_logits", "is_top1")
        outputs += ("log_sum_sq_probs",) if self.use_weighting else ()
        self.share_prompt = speed_up_models(self, outputs, self.share_prompt)
        self._models_patched = True

    def _compute_loss(self, model, inputs, return_outputs):
        with self._pair_rows(inputs):
            return super()._compute_loss(model, inputs, return_outputs)

    def compute_ref_log_probs(self, model, inputs):
        with self._pair_rows(inputs):
            return super().compute_ref_log_probs(model, inputs)

    def _pair_rows(self, inputs):
        return shared_prompt_rows(inputs) if self.share_prompt else contextlib.nullcontext()

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and _is_tokenized_pairs(dataset):
            lengths = pair_lengths(dataset, self.args.max_length, self.share_prompt)
            return PairLengthSampler(lengths, self.args.per_device_train_batch_size)
        return super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset):
        if self.args.train_sampling_strategy == "group_by_length" and _is_tokenized_pairs(eval_dataset):
            return None  # sequential: evaluation order does not change the metrics, grouping it buys little
        return super()._get_eval_sampler(eval_dataset)


class PairLengthSampler(Sampler):
    """Indices in batches of pairs of similar padded length, the batches in random order.

    Each epoch: shuffle, sort by length (equal lengths stay shuffled), cut into batches of `batch_size`; the
    longest batch goes first (a run that does not fit in memory fails at once), the short remainder last, the rest
    shuffled, so that the loader's batches are exactly these. Sorting the whole epoch pads less than transformers'
    LengthGroupedSampler, which sorts within groups of up to 50 batches. Randomness comes from torch's global
    generator, which the trainer seeds (every rank alike).
    """

    def __init__(self, lengths: list[int], batch_size: int):
        self.lengths, self.batch_size = lengths, batch_size

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        shuffled = torch.randperm(len(self.lengths)).tolist()
        ordered = sorted(shuffled, key=self.lengths.__getitem__, reverse=True)
        batches = [ordered[i : i + self.batch_size] for i in range(0, len(ordered), self.batch_size)]
        first, middle = batches[:1], batches[1:]
        last = [middle.pop()] if middle and len(middle[-1]) < self.batch_size else []
        middle = [middle[i] for i in torch.randperm(len(middle)).tolist()]
        return iter([index for batch in first + middle + last for index in batch])


def _is_tokenized_pairs(dataset) -> bool:
    return dataset is not None and set(PAIR_COLUMNS) <= set(getattr(dataset, "column_names", []))


def pair_lengths(dataset, max_length: int | None, shared_prompt: bool = False) -> list[int]:
    """Each pair's row length in a batch, after TRL truncates prompt + answer to max_length: the prompt and both
    answers with `shared_prompt`, else the prompt and the longer answer (the collator pads the other to it)."""
    columns = dataset.select_columns(list(PAIR_COLUMNS))
    cap = max_length or float("inf")
    lengths = []
    for p, c, r in zip(*(columns[name] for name in PAIR_COLUMNS)):
        chosen, rejected = min(len(p) + len(c), cap), min(len(p) + len(r), cap)
        prompt = min(len(p), cap)
        lengths.append(chosen + rejected - prompt if shared_prompt else max(chosen, rejected))
    return lengths


def speed_up_models(trainer, head_outputs: tuple[str, ...], share_prompt: bool) -> bool:
    """Patch a DPO or KTO trainer's policy and reference (a separate model, or the policy with its adapter off):
    without Triton, the completion-only head with the per-token fields `head_outputs` of TRL's fused head; with
    `share_prompt`, the backbone that computes shared-prompt or packed rows. Returns whether the rows are shared."""
    policy = trainer.model.get_base_model() if is_peft_model(trainer.model) else trainer.model
    reference = trainer.accelerator.unwrap_model(trainer.ref_model) if trainer.ref_model is not None else None
    models = [policy] + ([reference] if reference is not None else [])
    if not triton_head(trainer.accelerator.device):
        add_completion_lm_head(policy, head_outputs)
        if reference is not None:
            add_completion_lm_head(reference)
    if share_prompt:
        share_prompt = all([add_shared_prompt_backbone(m) for m in models])
        if not share_prompt:
            log_layout_fallback()
    return share_prompt


def log_layout_fallback() -> None:
    logger.info("share_prompt: off for this model (its attention takes no custom mask), TRL's layout is used")


class FastKTOTrainer(ContentKeyedReferenceCache, KTOTrainer):
    """TRL's KTOTrainer, with the same loss and metrics, and four changes that only make it faster:

    - `share_prompt`: row i of the completion rows and of the mismatched KL rows start with the same prompt, so TRL's
      two forwards on them (policy, and again reference) are computed as one, each prompt once for both completions
      and the batch packed into one row around the tokens every row starts with (a system prompt); the policy's KL
      completions come from its KV cache without gradient (prefopt.shared_prompt.JointRows);
    - without Triton (CPU), the log-probs come from prefopt.lm_head, which projects completion tokens only;
    - precomputed reference log-probs are cached by content, so sweeps and reruns reuse them (prefopt.ref_cache);
    - evaluation without compute_metrics skips the logits nothing reads.

    And one addition to the loss, off by default: `sft_weight` > 0 adds that weight times the mean negative
    log-likelihood of the desirable completions' tokens, as DPOConfig's loss_type "sft" does for chosen answers
    (TRL's KTO loss has no such term). It is logged as `sft_loss`.
    """

    def __init__(self, *args, share_prompt: bool = True, sft_weight: float = 0.0, **kwargs):
        if sft_weight < 0:
            raise ValueError(f"method.sft_weight={sft_weight}: give 0 (KTO alone) or a positive weight.")
        self._models_patched = False
        self.share_prompt = share_prompt
        self.sft_weight = sft_weight
        super().__init__(*args, **kwargs)
        self._patch_models()

    def _precompute_ref_logps(self, dataset, name, batch_size):
        self._patch_models()  # precompute_ref_log_probs runs inside TRL's __init__, after it patched its head
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def _patch_models(self):
        if self._models_patched:
            return
        # What TRL 1.16's KTOTrainer asks its fused head for: log-probs, entropy and mean logits (its metrics).
        self.share_prompt = speed_up_models(self, ("log_probs", "entropy", "mean_logits"), self.share_prompt)
        self._models_patched = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.sft_weight:
            with self._packed_rows(inputs):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        with self._packed_rows(inputs), first_output_on(model, inputs["input_ids"]) as policy:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        sft_loss = desirable_nll(policy[0].log_probs, inputs)
        self._metrics["train" if self.model.training else "eval"]["sft_loss"].append(sft_loss.item())
        if return_outputs:
            return result[0] + self.sft_weight * sft_loss, result[1]
        return result + self.sft_weight * sft_loss

    def compute_ref_log_probs(self, model, inputs):
        with self._packed_rows(inputs):
            return super().compute_ref_log_probs(model, inputs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # Without compute_metrics nothing reads the logits, which TRL 1.16's KTOTrainer would rebuild in an extra
        # forward over every position (its deprecated return_outputs path): the same eval metrics without it.
        loss_only = prediction_loss_only or self.compute_metrics is None
        return super().prediction_step(model, inputs, loss_only, ignore_keys)

    def _packed_rows(self, inputs):
        if not self.share_prompt:
            return contextlib.nullcontext()
        if "KL_input_ids" not in inputs:
            return rows_computed_as(pack_sequences(inputs["input_ids"], inputs["attention_mask"]))
        kl_rows = {key: inputs[f"KL_{key}"] for key in ("input_ids", "attention_mask", "completion_mask")}
        # Row i of both starts with prompt i: one forward computes them. TRL asks for the policy's KL rows (no_grad)
        # before its completion rows (with gradient): the first computation builds the completion rows' graph.
        both = joint_rows(inputs, kl_rows, gradient_first=torch.is_grad_enabled())
        if both is not None:
            return rows_computed_as(both)
        return rows_computed_as(
            pack_sequences(inputs["input_ids"], inputs["attention_mask"]),
            pack_sequences(kl_rows["input_ids"], kl_rows["attention_mask"]),
        )


@contextlib.contextmanager
def first_output_on(model, input_ids: torch.Tensor):
    """Collects the output of the first forward of `model` on exactly the tensor `input_ids`: in TRL 1.16's
    KTOTrainer._compute_loss that is the policy's forward on the completion rows (the KL rows are other tensors, the
    reference's forward on the same rows comes after)."""
    outputs = []

    def keep(module, args, kwargs, output):
        if not outputs and kwargs.get("input_ids") is input_ids:
            outputs.append(output)

    handle = model.register_forward_hook(keep, with_kwargs=True)
    try:
        yield outputs
    finally:
        handle.remove()
    if not outputs:
        raise RuntimeError("KTO's SFT term: TRL's policy forward on the batch was not seen (prefopt/compat/trl.py)")


def desirable_nll(log_probs: torch.Tensor, inputs: dict) -> torch.Tensor:
    """Mean negative log-likelihood over the completion tokens of the desirable rows (label True); 0 without any."""
    mask = inputs["completion_mask"][:, 1:].bool() & inputs["label"].to(torch.bool)[:, None]
    log_probs = log_probs[:, -mask.shape[1] :]  # TRL's positions of the real tokens
    return -log_probs[mask].mean() if mask.any() else log_probs.new_zeros(())


class FastRewardTrainer(RewardTrainer):
    """TRL's RewardTrainer, with the same loss and metrics, and one change that only makes it faster:

    - `share_prompt`: each pair is one row, the tokens its chosen and rejected texts start with (the prompt)
      computed once, and the pairs of a batch packed around their common prefix (prefopt.shared_prompt). The
      hidden states go back to TRL's layout before the score head, so each answer's score still reads its last
      token.
    """

    def __init__(self, *args, share_prompt: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        scorer = self.model.get_base_model() if is_peft_model(self.model) else self.model
        self.share_prompt = share_prompt and add_shared_prompt_backbone(scorer)
        if share_prompt and not self.share_prompt:
            log_layout_fallback()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.share_prompt:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        ids, attention = inputs["input_ids"], inputs["attention_mask"]
        pairs = {"input_ids": ids, "attention_mask": attention, "completion_mask": pair_answers(ids, attention)}
        with shared_prompt_rows(pairs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


class FastSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer, with the same loss and metrics, and two changes that only make it faster:

    - each batch is one row, the tokens every sequence starts with (a system prompt) computed once
      (prefopt.shared_prompt.pack_sequences), where that pays;
    - without Triton (CPU) the completion tokens alone go through the LM head (prefopt.lm_head), where TRL's torch
      fallback scores every position in many passes per tile.
    """

    def __init__(self, *args, share_prompt: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        policy = self.model.get_base_model() if is_peft_model(self.model) else self.model
        if not triton_head(self.accelerator.device):
            add_completion_lm_head(policy, ("log_probs", "entropy", "is_top1"))  # what SFTTrainer asked TRL's head for
        self.share_prompt = share_prompt and add_shared_prompt_backbone(policy)

    def compute_loss(self, model, inputs, *args, **kwargs):
        with shared_prompt_rows(inputs, sequences=True) if self.share_prompt else contextlib.nullcontext():
            return super().compute_loss(model, inputs, *args, **kwargs)
