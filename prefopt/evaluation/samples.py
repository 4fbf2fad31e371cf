"""samples.jsonl: one line per held-out prompt with both models' answers, their lengths and every judge's scores."""

from __future__ import annotations

import json
from pathlib import Path

from prefopt.distributed import is_main_process
from prefopt.evaluation.answers import HeldoutAnswers, HeldoutPrompts
from prefopt.evaluation.judges import Judgement

SAMPLES_FILE = "samples.jsonl"


def sample_rows(
    heldout: HeldoutPrompts,
    answers: HeldoutAnswers,
    judge_name: str | None = None,
    judgement: Judgement | None = None,
    verifier_passes: tuple[list[bool], list[bool]] | None = None,
) -> list[dict]:
    """Per prompt: the prompt (a conversation or text), the reference's and the policy's answer, their lengths in
    characters and tokens, whether each ended by itself, the policy answer's log pi - log pi_ref; on the built-in
    task its kind, expected answer and the verifier's pass flags; with a judge, its preference for the policy
    (`judge_preference`, 1 win, 0 loss, 1/2 tie) and its scores (`reference_reward`/`policy_reward` for a reward
    model) or verdicts (an LLM judge's, in each order)."""
    rows = []
    for i, prompt in enumerate(heldout.prompts):
        row = {
            "index": i,
            "prompt": prompt,
            "reference_answer": answers.reference[i],
            "policy_answer": answers.policy[i],
            "reference_length_chars": len(answers.reference[i]),
            "policy_length_chars": len(answers.policy[i]),
            "reference_length_tokens": answers.reference_tokens[i],
            "policy_length_tokens": answers.policy_tokens[i],
            "reference_finished": answers.reference_finished[i],
            "policy_finished": answers.policy_finished[i],
            "kl": answers.kl[i],
        }
        if heldout.tasks is not None:
            task = heldout.tasks[i]
            row.update(kind=task.kind, expected=task.answer or f"{task.n} distinct colors")
        if verifier_passes is not None:
            row.update(reference_pass=verifier_passes[0][i], policy_pass=verifier_passes[1][i])
        if judgement is not None:
            row["judge"] = judge_name
            row["judge_preference"] = judgement.preferences[i]
            if judge_name == "reward_model":
                row.update(reference_reward=judgement.reference_scores[i], policy_reward=judgement.policy_scores[i])
            if judgement.per_prompt:
                row.update(judgement.per_prompt[i])
        rows.append(row)
    return rows


def write_samples(path: Path, rows: list[dict]) -> None:
    """JSON lines, written atomically (a reader never sees half a file). Rank 0 only."""
    if not is_main_process():
        return
    partial = Path(path).with_name(Path(path).name + ".tmp")
    with open(partial, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    partial.replace(path)
