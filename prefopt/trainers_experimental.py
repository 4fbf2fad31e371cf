"""TRL's experimental ORPOTrainer and CPOTrainer (CPO, SimPO) with the same losses and metrics, made faster.

Apart from prefopt.trainers so that only the recipes that train them import trl.experimental (and its warning).

Both trainers stack a batch as [chosen rows; rejected rows] after one prompt, as DPO does, and take the full
[rows, length, vocabulary] logits of every position: their log-probs and SFT term need a few of them, their
`logits/chosen` and `logits/rejected` metrics average all of them, padding included. Here each pair is one row with
its prompt computed once, the pairs packed around their common prefix (prefopt.shared_prompt), TRL's padding
positions computed as queries that nothing sees (for those metrics); the LM head projects only the positions that
have a label (prefopt.lm_head.add_scoring_head) and the metrics' mean logits come from `h . mean(W)`.
"""

import contextlib
import logging

import torch
from accelerate.utils import is_peft_model
from trl.experimental.cpo import CPOTrainer
from trl.experimental.orpo import ORPOTrainer

from prefopt.lm_head import add_scoring_head
from prefopt.shared_prompt import add_shared_prompt_backbone, shared_prompt_rows

logger = logging.getLogger(__name__)


class _ScoredPairs:
    """Mixed into ORPOTrainer and CPOTrainer: their `concatenated_forward` (TRL 1.16: returns chosen and rejected
    log-probs, chosen and rejected logits, the SFT loss) from shared-prompt rows and the scoring head."""

    def __init__(self, *args, share_prompt: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        policy = self.model.get_base_model() if is_peft_model(self.model) else self.model
        # Encoder-decoders and MoE (whose auxiliary loss needs the router logits) keep TRL's forward.
        supported = not self.is_encoder_decoder and not self.aux_loss_enabled
        self.scoring_head = supported and add_scoring_head(policy)
        self.share_prompt = share_prompt and supported and add_shared_prompt_backbone(policy)
        if share_prompt and not self.share_prompt:
            logger.info("share_prompt: off for this model (its attention takes no custom mask), TRL's layout is used")

    def concatenated_forward(self, model, batch):
        # TRL 1.16's concatenated_inputs (a static method) and its padding value: the rows TRL's forward builds.
        concatenated = self.concatenated_inputs(
            batch,
            is_encoder_decoder=self.is_encoder_decoder,
            padding_value=self._padding_value(),
            device=self.accelerator.device,
        )
        ids = concatenated["concatenated_input_ids"]
        attention = concatenated["concatenated_attention_mask"]
        labels = concatenated["concatenated_labels"]
        rows = contextlib.nullcontext()
        if self.share_prompt:
            pairs = {"input_ids": ids, "attention_mask": attention, "completion_mask": labels != -100}
            rows = shared_prompt_rows(pairs, padding_queries=True)  # the logits/* metrics average padding too
        with rows:
            if not self.scoring_head:
                return super().concatenated_forward(model, batch)
            pairs = len(batch["chosen_labels"])
            scored = self._scored_labels(ids, attention, labels, pairs)
            out = model(input_ids=ids, attention_mask=attention, use_cache=False, scored_labels=scored)
        completion = labels[:, 1:] != -100
        completion_log_probs = (out.log_probs * completion).sum(-1)
        if self._average_log_prob():
            completion_log_probs = completion_log_probs / completion.sum(-1)
        chosen_logits, rejected_logits = self._mean_logits(out.mean_logits).split(pairs)
        return (
            completion_log_probs[:pairs],
            completion_log_probs[pairs:],
            chosen_logits.mean(),  # TRL's trainer logs logits.detach().mean(): the same number
            rejected_logits.mean(),
            self._nll_loss(out.log_probs[:pairs], out.label_mask[:pairs]),
        )

    @staticmethod
    def _nll(log_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """nn.CrossEntropyLoss's mean over the scored tokens (log_probs is 0 elsewhere)."""
        return -log_probs.sum() / mask.sum()


class FastORPOTrainer(_ScoredPairs, ORPOTrainer):
    """TRL's ORPOTrainer with shared-prompt rows and the scoring head: the same loss, metrics and gradients.

    One option TRL's has not: `completion_only_loss=True` takes the SFT term over the chosen answers' tokens only, as
    SFTConfig's completion_only_loss does, where TRL's ORPO (and the paper's) takes it over prompt and answer.
    """

    def __init__(self, *args, completion_only_loss: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.completion_only_loss = completion_only_loss and self.scoring_head
        if completion_only_loss and not self.scoring_head:
            logger.info("completion_only_loss: off for this model (TRL's forward is used), SFT on prompt and answer")

    def _padding_value(self):
        return self.padding_value

    def _scored_labels(self, ids, attention, labels, pairs):
        if self.completion_only_loss:
            return labels  # the SFT term and the log-probs: the answers only
        # ORPO's SFT term covers the chosen rows' prompt and answer; its log-probs the answers only.
        chosen = ids[:pairs].masked_fill(attention[:pairs] == 0, -100)
        return torch.cat([chosen, labels[pairs:]])

    def _average_log_prob(self) -> bool:
        return True

    def _mean_logits(self, mean_logits):
        return mean_logits[:, :-1]  # TRL averages the shifted logits

    def _nll_loss(self, chosen_log_probs, chosen_mask):
        return self._nll(chosen_log_probs, chosen_mask)


class FastCPOTrainer(_ScoredPairs, CPOTrainer):
    """TRL's CPOTrainer (CPO, SimPO) with shared-prompt rows and the scoring head: the same loss, metrics and
    gradients."""

    def _padding_value(self):
        return self.pad_token_id

    def _scored_labels(self, ids, attention, labels, pairs):
        return labels  # the log-probs and the SFT term on chosen both cover the answers only

    def _average_log_prob(self) -> bool:
        return self.loss_type in ("ipo", "simpo")

    def _mean_logits(self, mean_logits):
        return mean_logits  # TRL averages every position's logits, the last one included

    def _nll_loss(self, chosen_log_probs, chosen_mask):
        if self.cpo_alpha == 0:
            return torch.tensor(0.0, device=self.accelerator.device)
        return self._nll(chosen_log_probs, chosen_mask)
