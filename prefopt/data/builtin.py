"""The built-in preference task: prompts whose answers a program can check, fully offline.

Every prompt carries its own verifier, so chosen answers are verified-good, rejected answers are
verified-bad, and the same verifier scores generations at evaluation time (`verify`).
Train and held-out prompts never overlap: the split is made on the prompt universe before any
pair is built. Everything is deterministic from `seed`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Portugal": "Lisbon",
    "Japan": "Tokyo",
    "China": "Beijing",
    "Russia": "Moscow",
    "Egypt": "Cairo",
    "Greece": "Athens",
    "Austria": "Vienna",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Finland": "Helsinki",
    "Denmark": "Copenhagen",
    "Poland": "Warsaw",
    "Ireland": "Dublin",
    "Hungary": "Budapest",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Chile": "Santiago",
    "Cuba": "Havana",
    "Thailand": "Bangkok",
    "Belgium": "Brussels",
    "Netherlands": "Amsterdam",
    "Argentina": "Buenos Aires",
    "Mexico": "Mexico City",
    "Canada": "Ottawa",
    "Australia": "Canberra",
    "India": "New Delhi",
    "Turkey": "Ankara",
    "Iran": "Tehran",
    "Iraq": "Baghdad",
    "Vietnam": "Hanoi",
    "Colombia": "Bogota",
    "Ukraine": "Kyiv",
    "Romania": "Bucharest",
    "Czechia": "Prague",
    "Switzerland": "Bern",
    "Morocco": "Rabat",
}

WORDS = [
    "apple",
    "river",
    "garden",
    "pencil",
    "window",
    "rocket",
    "silver",
    "button",
    "candle",
    "forest",
    "ladder",
    "orange",
    "planet",
    "summer",
    "tunnel",
    "violin",
    "wallet",
    "yellow",
    "bridge",
    "castle",
    "dragon",
    "engine",
    "flower",
    "guitar",
    "hammer",
    "island",
    "jacket",
    "kitten",
    "lemon",
    "mirror",
    "needle",
    "oyster",
    "pepper",
    "rabbit",
    "saddle",
    "tomato",
    "number",
    "velvet",
    "winter",
    "zipper",
]

COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown", "gray"]

KINDS = ("sum", "capital", "uppercase", "count")


@dataclass(frozen=True)
class Task:
    """One verifiable prompt: `kind` selects the rule, `answer` is the reference answer."""

    kind: str
    prompt: str
    answer: str
    n: int = 0  # item count, for kind == "count"


def _normalize(text: str) -> str:
    return text.strip().strip(".!").strip()


def verify(task: Task, response: str) -> bool:
    """True when `response` fully satisfies the task's instruction (content and format)."""
    text = _normalize(response)
    if task.kind in ("sum", "capital", "uppercase"):
        if task.kind == "capital":
            return text.lower() == task.answer.lower()
        return text == task.answer
    if task.kind == "count":
        items = [item.strip().lower() for item in text.split(",")]
        return len(items) == task.n and len(set(items)) == task.n and all(item in COLORS for item in items)
    raise ValueError(f"unknown builtin task kind {task.kind!r}; expected one of {KINDS}")


def has_right_content(task: Task, response: str) -> bool:
    """True when the response contains the right answer, whatever its format ("The sum is 61." for 27 + 34).

    Weaker than `verify`, which also checks the format: every response that passes `verify` has the right content.
    """
    if task.kind == "sum":
        return re.search(rf"(?<!\d){task.answer}(?!\d)", response) is not None
    if task.kind == "capital":
        return re.search(rf"\b{re.escape(task.answer)}\b", response, re.IGNORECASE) is not None
    if task.kind == "uppercase":
        return re.search(rf"\b{task.answer}\b", response) is not None
    if task.kind == "count":
        named = {color for color in COLORS if re.search(rf"\b{color}\b", response, re.IGNORECASE)}
        return len(named) == task.n
    raise ValueError(f"unknown builtin task kind {task.kind!r}; expected one of {KINDS}")


def _universe() -> dict[str, list[Task]]:
    sums = [
        Task("sum", f"What is {a} + {b}? Reply with only the number.", str(a + b))
        for a in range(10, 60)
        for b in range(10, 60)
    ]
    capitals = [
        Task("capital", f"What is the capital of {country}? Answer with the city name only.", city)
        for country, city in CAPITALS.items()
    ]
    uppercase = [
        Task("uppercase", f"Write the word '{word}' in capital letters. Reply with the word only.", word.upper())
        for word in WORDS
    ]
    counts = [
        Task("count", f"Name exactly {n} colors, separated by commas, and nothing else.", "", n=n) for n in (2, 3, 4, 5)
    ]
    return {"sum": sums, "capital": capitals, "uppercase": uppercase, "count": counts}


def _good_answer(task: Task, rng: random.Random) -> str:
    if task.kind == "count":
        return ", ".join(rng.sample(COLORS, task.n))
    return task.answer


def _bad_answer(task: Task, rng: random.Random) -> str:
    """A verified-bad answer: either right content in the wrong format, or the right format with wrong content."""
    verbose = rng.random() < 0.5
    if task.kind == "sum":
        total = int(task.answer)
        if verbose:
            return rng.choice(
                [
                    f"Sure! Let me add these numbers for you. The answer is {total}.",
                    f"To find the sum, we add the two numbers together, which gives us {total}.",
                    f"The sum of the two numbers is {total}. Let me know if you need anything else!",
                ]
            )
        return str(total + rng.choice([-11, -10, -2, -1, 1, 2, 10, 11]))
    if task.kind == "capital":
        if verbose:
            return f"The capital city of that country is {task.answer}, which is also its largest city."
        return rng.choice([city for city in CAPITALS.values() if city != task.answer])
    if task.kind == "uppercase":
        if verbose:
            return f"Here is the word in capital letters: {task.answer}"
        return task.answer.lower() if rng.random() < 0.5 else task.answer.capitalize()
    if task.kind == "count":
        if verbose:
            return f"Sure! Here are some colors: {', '.join(rng.sample(COLORS, task.n))}. I hope this helps!"
        return ", ".join(rng.sample(COLORS, task.n + rng.choice([-1, 1])))
    raise ValueError(f"unknown builtin task kind {task.kind!r}")


def split_tasks(seed: int = 0, eval_fraction: float = 0.2) -> dict[str, list[Task]]:
    """Split each kind's prompts into train and held-out, so no prompt is in both."""
    rng = random.Random(seed)
    splits: dict[str, list[Task]] = {"train": [], "test": []}
    for tasks in _universe().values():
        tasks = list(tasks)
        rng.shuffle(tasks)
        n_eval = max(1, round(len(tasks) * eval_fraction))
        splits["test"].extend(tasks[:n_eval])
        splits["train"].extend(tasks[n_eval:])
    return splits


def build_pairs(num_train: int, num_eval: int, seed: int = 0) -> dict[str, list[dict]]:
    """Paired rows in TRL's conversational preference format, plus `kind`/`answer` metadata columns.

    Kinds are interleaved so any prefix of a split covers every kind. Small kinds repeat their
    prompts with different answers when a split asks for more rows than it has prompts.
    """
    rng = random.Random(seed + 1)
    tasks_by_split = split_tasks(seed)
    out = {}
    for split, size in (("train", num_train), ("test", num_eval)):
        by_kind = {kind: [t for t in tasks_by_split[split] if t.kind == kind] for kind in KINDS}
        for tasks in by_kind.values():
            rng.shuffle(tasks)
        rows = []
        for i in range(size):
            kind = KINDS[i % len(KINDS)]
            tasks = by_kind[kind]
            task = tasks[(i // len(KINDS)) % len(tasks)]
            rows.append(_pair(task, rng))
        out[split] = rows
    return out


def _pair(task: Task, rng: random.Random) -> dict:
    chosen, rejected = _good_answer(task, rng), _bad_answer(task, rng)
    assert verify(task, chosen) and not verify(task, rejected), (task, chosen, rejected)
    return {
        "prompt": [{"role": "user", "content": task.prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "kind": task.kind,
        "answer": task.answer,
        "n": task.n,
    }


def task_of(row: dict) -> Task:
    """The verifiable task behind a built-in row, for scoring generations."""
    return Task(row["kind"], row["prompt"][-1]["content"], row["answer"], row.get("n", 0))
