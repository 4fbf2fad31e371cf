"""Did training help? Implicit-reward metrics on held-out pairs, and answers scored by the built-in task's verifier.

Both compare the trained policy with its reference (the base model: LoRA adapter disabled, or loaded again).
`scripts/evaluate.py` runs it on a finished run directory; `scripts/train.py` runs it after training
(`eval_generation:` in conf/train.yaml). Results go to `<run dir>/eval.json`.

Sequences are tokenized as TRL's DPOTrainer does: the prompt rendered with the chat template and
add_generation_prompt=True, the completion being the rendering of prompt+answer after that prompt prefix.
A sequence's log-probability is the sum over its completion tokens.

The modules, each importing only those above it:
  models      the policy and its reference (PolicyAndReference)
  encoding    prompts and pairs tokenized as TRL's DPOTrainer does
  generation  greedy or sampled answers with their log-probs (GenerationSettings, Answers, generate)
  logprobs    log-probs of given answers: implicit rewards on pairs (pair_metrics), KL per answer
  scoring     the built-in task's held-out prompts and verifier: pass rates, win rate, KL
  report      the before/after table, and the W&B summary
  runs        one evaluation: evaluate, eval.json, loading a finished run, the launcher's step after training
  harness     lm-evaluation-harness tasks on policy and reference, eval.json's harness section (imported on its own:
              prefopt.evaluation.harness, which imports lm_eval only when it runs)
"""

from prefopt.evaluation.encoding import encode_pair, encode_prompt
from prefopt.evaluation.generation import Answers, GenerationSettings, generate
from prefopt.evaluation.logprobs import kl_per_answer, pair_metrics, sequence_logps
from prefopt.evaluation.models import PolicyAndReference
from prefopt.evaluation.report import flat_metrics, format_report, log_to_wandb, report_rows
from prefopt.evaluation.runs import (
    EVAL_FILE,
    check_run,
    evaluate,
    evaluate_after_training,
    load_run,
    pairs_from_trainer_metrics,
    refuse_existing_eval,
    write_eval,
)
from prefopt.evaluation.scoring import generation_metrics, heldout_tasks, score_answers

__all__ = [
    "EVAL_FILE",
    "Answers",
    "GenerationSettings",
    "PolicyAndReference",
    "check_run",
    "encode_pair",
    "encode_prompt",
    "evaluate",
    "evaluate_after_training",
    "flat_metrics",
    "format_report",
    "generate",
    "generation_metrics",
    "heldout_tasks",
    "kl_per_answer",
    "load_run",
    "log_to_wandb",
    "pair_metrics",
    "pairs_from_trainer_metrics",
    "refuse_existing_eval",
    "report_rows",
    "score_answers",
    "sequence_logps",
    "write_eval",
]
