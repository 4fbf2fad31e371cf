"""The built-in preference task: prompts whose answers a program can check, fully offline.

Every prompt carries its own verifier, so chosen answers are verified-good, rejected answers are
verified-bad, and the same verifier scores generations at evaluation time (`verify`).
Each kind's prompts are split three ways before any pair is built, so no prompt is in two splits: `test` (128
prompts, what runs report), `validation` (64, what settings are chosen on) and `train` (the rest). Everything is
deterministic from `seed`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from prefopt.errors import RecipeError

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
    "the United Kingdom": "London",
    "South Korea": "Seoul",
    "North Korea": "Pyongyang",
    "Indonesia": "Jakarta",
    "the Philippines": "Manila",
    "Malaysia": "Kuala Lumpur",
    "Pakistan": "Islamabad",
    "Bangladesh": "Dhaka",
    "Nepal": "Kathmandu",
    "Afghanistan": "Kabul",
    "Saudi Arabia": "Riyadh",
    "Syria": "Damascus",
    "Jordan": "Amman",
    "Lebanon": "Beirut",
    "Qatar": "Doha",
    "Kuwait": "Kuwait City",
    "Oman": "Muscat",
    "the United Arab Emirates": "Abu Dhabi",
    "Ethiopia": "Addis Ababa",
    "Nigeria": "Abuja",
    "Ghana": "Accra",
    "Senegal": "Dakar",
    "Algeria": "Algiers",
    "Tunisia": "Tunis",
    "Libya": "Tripoli",
    "Sudan": "Khartoum",
    "Uganda": "Kampala",
    "Zimbabwe": "Harare",
    "Zambia": "Lusaka",
    "Angola": "Luanda",
    "Mozambique": "Maputo",
    "Madagascar": "Antananarivo",
    "Somalia": "Mogadishu",
    "Rwanda": "Kigali",
    "Venezuela": "Caracas",
    "Ecuador": "Quito",
    "Uruguay": "Montevideo",
    "Jamaica": "Kingston",
    "Panama": "Panama City",
    "Guatemala": "Guatemala City",
    "Honduras": "Tegucigalpa",
    "Nicaragua": "Managua",
    "Serbia": "Belgrade",
    "Croatia": "Zagreb",
    "Slovenia": "Ljubljana",
    "Slovakia": "Bratislava",
    "Bulgaria": "Sofia",
    "Albania": "Tirana",
    "Estonia": "Tallinn",
    "Latvia": "Riga",
    "Lithuania": "Vilnius",
    "Belarus": "Minsk",
    "Iceland": "Reykjavik",
    "Georgia": "Tbilisi",
    "Armenia": "Yerevan",
    "Azerbaijan": "Baku",
    "Uzbekistan": "Tashkent",
    "Cambodia": "Phnom Penh",
    "Laos": "Vientiane",
    "New Zealand": "Wellington",
    "Fiji": "Suva",
    "Cyprus": "Nicosia",
    "Malta": "Valletta",
    "Bosnia and Herzegovina": "Sarajevo",
    "North Macedonia": "Skopje",
    "Montenegro": "Podgorica",
    "Mali": "Bamako",
    "Niger": "Niamey",
    "Botswana": "Gaborone",
    "Namibia": "Windhoek",
    "Haiti": "Port-au-Prince",
    "the Dominican Republic": "Santo Domingo",
    "El Salvador": "San Salvador",
    "the Bahamas": "Nassau",
    "Tajikistan": "Dushanbe",
    "Kyrgyzstan": "Bishkek",
    "Turkmenistan": "Ashgabat",
    "Bhutan": "Thimphu",
}

# fmt: off
WORDS = [
    "apple", "river", "garden", "pencil", "window", "rocket", "silver", "button", "candle", "forest",
    "ladder", "orange", "planet", "summer", "tunnel", "violin", "wallet", "yellow", "bridge", "castle",
    "dragon", "engine", "flower", "guitar", "hammer", "island", "jacket", "kitten", "lemon", "mirror",
    "needle", "oyster", "pepper", "rabbit", "saddle", "tomato", "number", "velvet", "winter", "zipper",
    "anchor", "basket", "blanket", "bottle", "butter", "cactus", "camera", "carpet", "cherry", "circle",
    "cookie", "cotton", "desert", "doctor", "feather", "finger", "garlic", "ginger", "hollow", "honey",
    "jungle", "kettle", "lantern", "letter", "lizard", "magnet", "marble", "meadow", "monkey", "motor",
    "napkin", "nickel", "ocean", "office", "paddle", "parrot", "peanut", "pillow", "pirate", "pocket",
    "potato", "puzzle", "rainbow", "ribbon", "saucer", "shadow", "signal", "sister", "spider", "spoon",
    "stable", "statue", "sugar", "tablet", "teacher", "ticket", "timber", "toast", "trumpet", "turtle",
    "valley", "vessel", "wagon", "walnut", "weasel", "whistle", "wizard", "yogurt", "zebra", "harbor",
    "beacon", "cabin", "canyon", "comet", "crystal", "falcon", "glacier", "helmet", "meteor", "nectar",
    "orchard", "pebble", "quartz", "radish", "salmon", "tiger", "village", "walrus", "badger", "barrel",
    "bucket", "cinema", "dolphin", "eagle", "fabric", "goblet", "heron", "iceberg", "jigsaw", "koala",
    "lobster", "muffin", "noodle", "otter", "pumpkin", "quilt", "raven", "sandal", "thunder", "umbrella",
]
# fmt: on

COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown", "gray"]

KINDS = ("sum", "capital", "uppercase", "count")
COUNT_PROMPTS = (
    "Name exactly {n} colors, separated by commas, and nothing else.",
    "List {n} different colors, separated by commas. Reply with the list only.",
    "Give me {n} colors as a comma-separated list, with no other text.",
    "Write exactly {n} color names separated by commas and nothing else.",
)
# Distinct prompts per kind in each held-out split; the rest of each kind trains. `test` is what runs report,
# `validation` is what defaults and sweeps are chosen on (dataset.eval_split=validation), never the other way round.
HELD_OUT = {
    "test": {"sum": 40, "capital": 40, "uppercase": 40, "count": 8},
    "validation": {"sum": 20, "capital": 20, "uppercase": 20, "count": 4},
}
SPLITS = ("train", "validation", "test")


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
    counts = [Task("count", template.format(n=n), "", n=n) for template in COUNT_PROMPTS for n in (2, 3, 4, 5, 6)]
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


def split_tasks(seed: int = 0) -> dict[str, list[Task]]:
    """Each kind's prompts split into train, validation and test (sizes in HELD_OUT), so no prompt is in two."""
    rng = random.Random(seed)
    splits: dict[str, list[Task]] = {split: [] for split in SPLITS}
    for kind, tasks in _universe().items():
        tasks = list(tasks)
        rng.shuffle(tasks)
        n_test, n_validation = HELD_OUT["test"][kind], HELD_OUT["validation"][kind]
        splits["test"].extend(tasks[:n_test])
        splits["validation"].extend(tasks[n_test : n_test + n_validation])
        splits["train"].extend(tasks[n_test + n_validation :])
    return splits


def interleaved(tasks: list[Task], limit: int | None = None) -> list[Task]:
    """`tasks` reordered round-robin over kinds (each kind keeps its order), so any prefix covers every kind."""
    by_kind = {kind: [t for t in tasks if t.kind == kind] for kind in KINDS}
    out = [
        by_kind[k][i] for i in range(max(map(len, by_kind.values()), default=0)) for k in KINDS if i < len(by_kind[k])
    ]
    return out[:limit] if limit else out


def heldout_tasks(split: str = "test", seed: int = 0, limit: int | None = None) -> list[Task]:
    """The distinct prompts of a held-out split, kinds interleaved: what generation is scored on."""
    if split not in HELD_OUT:
        raise RecipeError(f"dataset.eval_split={split!r} (built-in task): held-out prompts are test or validation.")
    return interleaved(split_tasks(seed)[split], limit)


def build_pairs(num_train: int, num_eval: int, seed: int = 0, eval_split: str = "test") -> dict[str, list[dict]]:
    """Paired rows in TRL's conversational preference format, plus `kind`/`answer` metadata columns: "train" from
    the train prompts, "test" from the `eval_split` prompts (test, or validation when choosing settings).

    Kinds are interleaved so any prefix of a split covers every kind. Small kinds repeat their
    prompts with different answers when a split asks for more rows than it has prompts.
    """
    if eval_split not in HELD_OUT:
        raise RecipeError(f"dataset.eval_split={eval_split!r} (built-in task): use test or validation.")
    rng = random.Random(seed + 1)
    tasks_by_split = split_tasks(seed)
    out = {}
    for split, source, size in (("train", "train", num_train), ("test", eval_split, num_eval)):
        by_kind = {kind: [t for t in tasks_by_split[source] if t.kind == kind] for kind in KINDS}
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
