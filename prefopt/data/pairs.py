"""Best-of-N preference pairs: sample N answers per prompt, score them, keep the best as chosen and the worst as rejected.

The answers come from the evaluation's batched generation (prefopt.evaluation.generation), the project's one way to
generate; the model is a base model, a finished run's policy (`make pairs run=`), or online DPO's current policy.

A scoring function takes (prompt row, answers) and returns one float per answer: the built-in verifier
(`verifier_scores`), a reward model from the Hub or `make train-rm` (`RewardModel`), or any function of that shape. Prompts whose answers
all score the same (ties) carry no preference and are skipped. The output is the `dataset=local` JSONL format,
so `dataset=local dataset.path=<output>` trains on it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from prefopt.data import builtin
from prefopt.data.local import check_text, data_files, read_records
from prefopt.errors import RecipeError

Score = Callable[[dict, list[str]], list[float]]


def builtin_prompts(num_prompts: int, seed: int = 0, split_seed: int = 0) -> list[dict]:
    """Up to `num_prompts` distinct training prompts of the built-in task, kinds interleaved, with their verifier fields.

    `split_seed` is the `dataset.seed` whose train/held-out split the prompts come from (so none is a prompt that
    split holds out); `seed` orders them."""
    rng = random.Random(seed + 2)
    train = builtin.split_tasks(split_seed)["train"]
    by_kind = {kind: [t for t in train if t.kind == kind] for kind in builtin.KINDS}
    for tasks in by_kind.values():
        rng.shuffle(tasks)
    rows = []
    for i in range(max(len(tasks) for tasks in by_kind.values())):
        for kind in builtin.KINDS:
            if i < len(by_kind[kind]) and len(rows) < num_prompts:
                task = by_kind[kind][i]
                rows.append(
                    {
                        "prompt": [{"role": "user", "content": task.prompt}],
                        "kind": kind,
                        "answer": task.answer,
                        "n": task.n,
                    }
                )
    return rows


def read_prompts(path: str | Path, num_prompts: int | None = None) -> list[dict]:
    """Prompts from a JSONL/CSV/Parquet file with a `prompt` field (a string or messages); other fields are kept."""
    rows = []
    for file in data_files(path):
        for where, record in read_records(file):
            if "prompt" not in record:
                raise RecipeError(f"{where}: no 'prompt' field (found {', '.join(record) or 'none'}).")
            prompt = check_text(record["prompt"], where, "'prompt'", is_completion=False)
            if isinstance(prompt, str):
                prompt = [{"role": "user", "content": prompt}]
            rows.append({**record, "prompt": prompt})
            if num_prompts and len(rows) == num_prompts:
                return rows
    if not rows:
        raise RecipeError(f"{path}: no prompts.")
    return rows


def verifier_scores(row: dict, answers: list[str]) -> list[float]:
    """1.0 for an answer the built-in verifier accepts, 0.5 for the right content in the wrong format, else 0.0.

    The half credit matters: SmolLM2-135M almost never answers in the exact format (0 of 32 samples here), so a
    pass/fail score ties on nearly every prompt, while "61, as 27 + 34 = 61" over "27 + 34 = 51" is a real preference.
    """
    if "kind" not in row or "answer" not in row:
        raise RecipeError(
            "the built-in verifier scores only built-in prompts (rows with kind/answer fields); "
            "for your own prompts give a reward model: reward.model=<Hub id or folder>."
        )
    task = builtin.task_of(row)
    return [1.0 if builtin.verify(task, a) else 0.5 if builtin.has_right_content(task, a) else 0.0 for a in answers]


def scorer(reward_cfg: DictConfig | dict) -> Score:
    """The scoring function a `reward:` section asks for: a RewardModel for `reward.model`, else the built-in verifier."""
    if reward_cfg.get("model"):
        return RewardModel(
            str(reward_cfg["model"]), reward_cfg.get("batch_size", 16), reward_cfg.get("max_length", 1024)
        )
    return verifier_scores


class RewardModel:
    """A reward model (one logit per text) scoring prompt + answer through its chat template.

    `source` is a Hub id or folder of an AutoModelForSequenceClassification, or the run directory of
    `make train-rm` (config.yaml + model/, a LoRA adapter or a full model; its model/ folder works too). `key` is the
    config key that named it, for the messages (reward.model, judge.model).
    """

    def __init__(
        self,
        source: str,
        batch_size: int = 16,
        max_length: int = 1024,
        device: str | None = None,
        key: str = "reward.model",
    ):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        run_dir = reward_run_dir(source)
        if run_dir is not None:
            self.model, self.tokenizer = load_reward_run(run_dir, source, key)
        else:
            self.model, self.tokenizer = _load_reward_folder(source, key)
        if self.model.config.num_labels != 1:
            raise RecipeError(
                f"{key}={source} has {self.model.config.num_labels} labels; a reward model has one score (num_labels=1)."
            )
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        if not getattr(self.model, "is_loaded_in_4bit", False):  # 4-bit weights were placed while loading
            self.model.to(self.device)
        self.model.eval()
        self.batch_size, self.max_length = batch_size, max_length

    def __call__(self, row: dict, answers: list[str]) -> list[float]:
        return self.score_conversations([list(row["prompt"]) + [{"role": "assistant", "content": a}] for a in answers])

    @torch.no_grad()
    def score_conversations(self, conversations: list[list[dict]]) -> list[float]:
        """One score per conversation (its last turn the answer), rendered with the reward model's chat template and
        scored `batch_size` at a time, similar lengths together so that little of a batch is padding."""
        texts = [self.tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        scores = [0.0] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in chunk],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                add_special_tokens=False,
                return_tensors="pt",
            ).to(self.device)
            for i, score in zip(chunk, self.model(**batch).logits[:, 0].float().tolist()):
                scores[i] = score
        return scores


def reward_run_dir(source: str) -> Path | None:
    """The run directory `source` names (it, or its model/ folder, next to a config.yaml), else None."""
    from prefopt.run_files import CONFIG_FILE, MODEL_DIR

    path = Path(source).expanduser()
    if (path / CONFIG_FILE).is_file():
        return path
    if path.name == MODEL_DIR and (path.parent / CONFIG_FILE).is_file():
        return path.parent
    return None


def load_reward_run(run_dir: Path, source: str | None = None, key: str = "reward.model"):
    """(model, tokenizer) of a finished `make train-rm` run, in fp32 (4-bit base weights for a QLoRA run).

    The tokenizer is built as the run built it (the char tokenizer of tiny-random has no files to load), and an
    adapter goes back onto the run's base model with the trained score head."""
    from transformers import AutoModelForSequenceClassification

    from prefopt.adapters import quantization_config
    from prefopt.models import check_available, load_model, load_tokenizer
    from prefopt.recipe import load_recipe
    from prefopt.run_files import CONFIG_FILE, MODEL_DIR, check_model

    name = f"{key}={source or run_dir}"
    cfg = OmegaConf.load(run_dir / CONFIG_FILE)
    recipe_module = OmegaConf.select(cfg, "method.recipe")
    if not recipe_module:
        raise RecipeError(
            f"{name}: {run_dir / CONFIG_FILE} names no method.recipe, so it is not the config of a scripts/train.py "
            f"run; give the run directory of `make train-rm` or a Hub id or folder of a sequence-classification model."
        )
    if not load_recipe(recipe_module).trains_reward_model:
        raise RecipeError(
            f"{name}: {run_dir} is a run of method={cfg.method.name}, which trains a policy (a causal LM), not a "
            f"reward model. Train one with `make train-rm` and give its run directory, or give a Hub id or folder of "
            f"a sequence-classification model."
        )
    model_dir = run_dir / MODEL_DIR
    try:
        check_model(run_dir)
    except RecipeError as exc:
        raise RecipeError(f"{name}: {exc}") from None
    tokenizer = load_tokenizer(cfg.model)
    if not (model_dir / "adapter_config.json").is_file():
        return AutoModelForSequenceClassification.from_pretrained(str(model_dir), dtype=torch.float32), tokenizer
    from peft import PeftModel

    check_available(cfg.model)
    quantization = quantization_config(cfg.peft, "fp32")
    base = load_model(cfg.model, "fp32", quantization, seed=cfg.train.seed, model_class="sequence_classification")
    model = PeftModel.from_pretrained(base, str(model_dir))
    # One plain model scores faster; LoRA on 4-bit weights stays unmerged (merging would round the update away).
    return (model if quantization is not None else model.merge_and_unload()), tokenizer


def _load_reward_folder(source: str, key: str = "reward.model"):
    """(model, tokenizer) of a Hub id or folder holding a sequence-classification model."""
    from transformers import AutoModelForSequenceClassification

    from prefopt.models import check_available, load_tokenizer

    path = Path(source).expanduser()
    if path.is_dir() and not any((path / name).is_file() for name in ("config.json", "adapter_config.json")):
        raise RecipeError(
            f"{key}={source}: the folder holds neither a model (config.json) nor a run of `make train-rm` "
            f"(config.yaml and model/)."
        )
    model_cfg = OmegaConf.create({"name": key, "path": source})
    check_available(model_cfg)
    tokenizer = load_tokenizer(model_cfg)  # ChatML when the reward model ships no template
    return AutoModelForSequenceClassification.from_pretrained(source, dtype=torch.float32), tokenizer


def sample_answers(
    model,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[dict],
    *,
    num_samples: int,
    batch_size: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    progress: bool = False,
) -> tuple[list[list[str]], list[list[bool]]]:
    """`num_samples` sampled answers per prompt row, and whether each ended by itself (a stop token before
    max_new_tokens), from prefopt.evaluation's batched generation: `batch_size` answers are generated together."""
    from prefopt.evaluation.encoding import encode_prompt
    from prefopt.evaluation.generation import decode, generate

    prompts_ids = [encode_prompt(tokenizer, row["prompt"]) for row in prompts]
    with tqdm(total=len(prompts) * num_samples, desc="sampling", unit="answer", disable=not progress) as bar:
        answers = generate(
            model,
            tokenizer,
            prompts_ids,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            num_samples=num_samples,
            temperature=temperature,
            top_p=top_p,
            logps=False,  # nothing here reads them: no log-softmax over the vocabulary per step
            on_batch=bar.update,
        )
    texts = [decode(tokenizer, ids).strip() for ids in answers.ids]

    def per_prompt(flat):
        return [flat[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]

    return per_prompt(texts), per_prompt(answers.finished)


def best_and_worst(
    row: dict, answers: list[str], score: Score, finished: list[bool] | None = None
) -> tuple[str, float, str, float] | None:
    """(chosen, its score, rejected, its score), or None when under two distinct answers or no better finished one.

    An answer cut off at max_new_tokens (`finished` False) may be rejected but never chosen: training would
    teach the model to stop mid-sentence.
    """
    done: dict[str, bool] = {}
    for answer, ended in zip(answers, finished or [True] * len(answers)):
        if answer:
            done[answer] = done.get(answer, False) or ended
    distinct = list(done)
    if len(distinct) < 2:
        return None
    scores = score(row, distinct)
    candidates = [i for i, answer in enumerate(distinct) if done[answer]]
    if not candidates:
        return None
    best = max(candidates, key=scores.__getitem__)
    worst = min(range(len(distinct)), key=scores.__getitem__)
    if scores[best] <= scores[worst]:
        return None
    return distinct[best], float(scores[best]), distinct[worst], float(scores[worst])


def sample_pairs(
    model,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[dict],
    score: Score = verifier_scores,
    *,
    num_samples: int = 4,
    batch_size: int = 32,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    require_finished: bool = True,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Pairs in the local JSONL format, and counts (see `pairs_from_samples`), from `num_samples` answers per
    prompt sampled from `model` (`batch_size` answers generated together). With `require_finished`, answers cut off
    at max_new_tokens are never chosen."""
    if num_samples < 2:
        raise RecipeError(f"num_samples={num_samples}: best-of-N needs at least 2 answers per prompt.")
    torch.manual_seed(seed)
    answers, finished = sample_answers(
        model,
        tokenizer,
        prompts,
        num_samples=num_samples,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        progress=progress,
    )
    return pairs_from_samples(prompts, answers, finished, score, require_finished=require_finished)


def pairs_from_samples(
    prompts: list[dict],
    answers: list[list[str]],
    finished: list[list[bool]],
    score: Score = verifier_scores,
    *,
    require_finished: bool = True,
) -> tuple[list[dict], dict]:
    """Each prompt's best answer as chosen and worst as rejected (`best_and_worst`), in the local JSONL format, and
    counts: prompts, pairs, ties (no finished answer scored above the worst), too_few_distinct (under two distinct
    non-empty answers), empty and unfinished answers, mean chosen and rejected scores."""
    pairs, ties, too_few, empty, unfinished = [], 0, 0, 0, 0
    for row, row_answers, row_finished in zip(prompts, answers, finished, strict=True):
        empty += sum(not a for a in row_answers)
        unfinished += sum(not f for f in row_finished)
        if len(set(a for a in row_answers if a)) < 2:
            too_few += 1
            continue
        picked = best_and_worst(row, row_answers, score, row_finished if require_finished else None)
        if picked is None:
            ties += 1
            continue
        chosen, chosen_score, rejected, rejected_score = picked
        pairs.append(
            {
                **row,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "chosen_score": chosen_score,
                "rejected_score": rejected_score,
            }
        )

    def mean(values):
        return round(sum(values) / len(values), 4) if values else None

    stats = {
        "prompts": len(prompts),
        "samples_per_prompt": len(answers[0]) if answers else 0,
        "pairs": len(pairs),
        "ties": ties,
        "too_few_distinct": too_few,
        "empty_answers": empty,
        "unfinished_answers": unfinished,
        "mean_chosen_score": mean([p["chosen_score"] for p in pairs]),
        "mean_rejected_score": mean([p["rejected_score"] for p in pairs]),
    }
    return pairs, stats


def refuse_overwrite(path: str | Path, force: bool) -> None:
    if Path(path).exists() and not force:
        raise RecipeError(f"{path} already exists: pass --force to overwrite it, or choose another output=.")


def write_pairs(pairs: list[dict], path: str | Path, force: bool = False) -> Path:
    """Write JSONL atomically (a killed run never leaves half a file) and refuse to overwrite without `force`."""
    path = Path(path)
    refuse_overwrite(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs)
    partial.replace(path)
    return path
