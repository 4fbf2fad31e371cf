"""Did training help? Implicit-reward metrics on held-out pairs, and the answers to held-out prompts of any dataset,
judged: by the built-in task's verifier, a reward model or an LLM (the `judge` config group).

Both compare the trained policy with its reference (the base model: LoRA adapter disabled, or loaded again).
`scripts/evaluate.py` runs it on a finished run directory; `scripts/train.py` runs it after training
(`eval_generation:` and `judge:` in conf/train.yaml). Results go to `<run dir>/eval.json` and the answers to
`<run dir>/samples.jsonl`.

Sequences are tokenized as TRL's DPOTrainer does: the prompt rendered with the chat template and
add_generation_prompt=True, the completion being the rendering of prompt+answer after that prompt prefix.
A sequence's log-probability is the sum over its completion tokens.

The modules, each importing only those above it:
  models      the policy and its reference (PolicyAndReference)
  encoding    prompts and pairs tokenized as TRL's DPOTrainer does
  generation  greedy or sampled answers with their log-probs (GenerationSettings, Answers, generate)
  logprobs    log-probs of given answers: implicit rewards on pairs (pair_metrics), KL per answer
  answers     the distinct held-out prompts of any dataset, both models' answers to them, eval.json's answers section
  scoring     the built-in task's held-out prompts and verifier: pass rates, win rate, KL
  winrates    win rates from per-prompt preferences: bootstrap intervals, AlpacaEval 2's length-controlled win rate,
              mean scores with standard errors, agreement with the verifier
  llm_judge   a pairwise LLM judge at an OpenAI-compatible endpoint (standard-library HTTP)
  judges      the judge config group: checks, the reward-model and LLM judges, eval.json's judge section
  samples     samples.jsonl: per prompt both answers, their lengths, every judge's scores
  report      the before/after table, and the W&B summary and samples table
  runs        one evaluation: evaluate, eval.json, loading a finished run, the launcher's step after training
  harness     lm-evaluation-harness tasks on policy and reference, eval.json's harness section (imported on its own:
              prefopt.evaluation.harness, which imports lm_eval only when it runs)
"""

from prefopt.evaluation.answers import HeldoutAnswers, HeldoutPrompts, answer_prompts, heldout_prompts
from prefopt.evaluation.encoding import encode_pair, encode_prompt
from prefopt.evaluation.generation import Answers, GenerationSettings, generate
from prefopt.evaluation.judges import load_judge
from prefopt.evaluation.judges import resolve as resolve_judge
from prefopt.evaluation.llm_judge import JudgeUnavailable
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
from prefopt.evaluation.samples import SAMPLES_FILE
from prefopt.evaluation.scoring import generation_metrics, heldout_tasks, score_answers

__all__ = [
    "EVAL_FILE",
    "SAMPLES_FILE",
    "Answers",
    "GenerationSettings",
    "HeldoutAnswers",
    "HeldoutPrompts",
    "JudgeUnavailable",
    "PolicyAndReference",
    "answer_prompts",
    "check_run",
    "encode_pair",
    "encode_prompt",
    "evaluate",
    "evaluate_after_training",
    "flat_metrics",
    "format_report",
    "generate",
    "generation_metrics",
    "heldout_prompts",
    "heldout_tasks",
    "kl_per_answer",
    "load_judge",
    "load_run",
    "log_to_wandb",
    "pair_metrics",
    "pairs_from_trainer_metrics",
    "refuse_existing_eval",
    "report_rows",
    "resolve_judge",
    "score_answers",
    "sequence_logps",
    "write_eval",
]
