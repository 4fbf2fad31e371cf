"""A run's policy and its reference on EleutherAI's lm-evaluation-harness: harness tasks by name (they fetch their
data from the Hugging Face Hub) or local task YAML files and folders, side by side in eval.json's `harness` section.

`scripts/eval_harness.py` (`make eval-harness run=<run dir> tasks=<names>`) drives it. The harness sees the models
this package already loaded (prefopt.evaluation.runs.load_run), wrapped in its HFLM, so a LoRA policy is measured
against exactly the reference `make eval` uses: the base with the adapter disabled, or the reference loaded again.
"""

from __future__ import annotations

import difflib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefopt.errors import RecipeError
from prefopt.evaluation.models import PolicyAndReference
from prefopt.reports import console_table, format_cell
from prefopt.run_files import EVAL_FILE, write_json

log = logging.getLogger(__name__)

SECTION = "harness"
WHO = ("reference", "policy")
LIST_TASKS = ".venv/bin/lm-eval ls tasks"


@dataclass
class HarnessSettings:
    """What simple_evaluate is asked for; recorded with every task it scores."""

    limit: int | None = None  # examples per task (None: all)
    num_fewshot: int | None = None  # None: the task's own default
    batch_size: int | str = 8  # or "auto" (the harness finds the largest that fits)
    apply_chat_template: bool = False
    bootstrap_iters: int = 100000  # the harness's default; only metrics without a closed-form stderr use it


@dataclass
class HarnessTasks:
    """Requested tasks resolved against the harness's index: what to pass to simple_evaluate, and where from."""

    names: list[str]
    sources: dict[str, str]  # task name -> the harness name or the local YAML it came from
    include_path: list[str] = field(default_factory=list)
    include_defaults: bool = True  # the harness's own ~15k task configs: indexing them takes seconds
    _manager: object = field(default=None, repr=False, compare=False)

    def task_manager(self):
        """One TaskManager for the name check, the data check and both evaluations."""
        if self._manager is None:
            from lm_eval.tasks import TaskManager

            self._manager = TaskManager(include_path=self.include_path or None, include_defaults=self.include_defaults)
        return self._manager


# ------------------------------------------------------------------------------------------- task names


def _local_entries(paths: list[Path]) -> list[str]:
    """The tasks and groups defined by YAML files under `paths`, without the tasks a group there already runs
    (the harness refuses one task requested twice)."""
    from prefopt.compat.lm_eval import task_index

    Kind, TaskIndex = task_index()  # noqa: N806 (classes)
    index = TaskIndex.build(paths)
    grouped = set()
    for entry in index.values():
        if entry.kind == Kind.GROUP:
            grouped.update(t for t in (entry.cfg or {}).get("task", []) if isinstance(t, str))
    return [
        name
        for name, entry in index.items()
        if entry.kind == Kind.GROUP or (entry.kind in (Kind.TASK, Kind.PY_TASK) and name not in grouped)
    ]


def _looks_like_a_path(spec: str) -> bool:
    return "/" in spec or spec.endswith((".yaml", ".yml"))


def resolve_tasks(spec: str | list[str]) -> HarnessTasks:
    """`ifeval,gsm8k,my_tasks/,my_task.yaml` -> harness task names; an unknown name fails here, before any model
    loads, naming it and how to find the right one."""
    specs = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s and s.strip()]
    if not specs:
        raise RecipeError(f"no harness tasks given: tasks=ifeval,gsm8k or a local task YAML (list them: {LIST_TASKS}).")
    names, sources, include_path, hub_names = [], {}, [], []
    for item in specs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = _local_entries([path])
            if not found:
                raise RecipeError(f"{path} holds no harness task YAML (a file with `task:` or `group:` at its top).")
            include_path.append(str(path))
            new = found
        elif path.is_file():
            new = [_yaml_task_name(path)]
            include_path.append(str(path.parent))  # its group's sibling tasks and `include:`s resolve from there
        elif _looks_like_a_path(item):
            raise RecipeError(f"no task file or folder {path}: pass an existing task YAML or a harness task name.")
        else:
            hub_names.append(item)
            new = [item]
        for name in new:
            if name not in sources:
                names.append(name)
                sources[name] = item
    tasks = HarnessTasks(names, sources, include_path, include_defaults=bool(hub_names))
    if hub_names:
        _refuse_unknown(hub_names, tasks.task_manager())
    return tasks


def _yaml_task_name(path: Path) -> str:
    from prefopt.compat.lm_eval import task_index

    _, TaskIndex = task_index()  # noqa: N806 (a class)
    try:
        entry = TaskIndex.entry_from_path(path)
    except Exception as exc:  # the harness raises whatever its YAML loader or shape check does
        raise RecipeError(f"{path} is not a harness task config ({type(exc).__name__}: {exc}).") from exc
    if entry is None:
        raise RecipeError(f"{path} names no task: a harness task YAML starts with `task: <name>` (or `group:`).")
    return entry.name


def _refuse_unknown(names: list[str], manager) -> None:
    known = set(manager.all_tasks)
    for name in names:
        if name in known or ("*" in name and manager.match_tasks([name])):
            continue
        close = difflib.get_close_matches(name, manager.all_tasks, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise RecipeError(
            f"unknown harness task '{name}'.{hint} List the harness's tasks with `{LIST_TASKS}`, or pass a local "
            f"task YAML file or folder: tasks=path/to/my_task.yaml."
        )


def check_task_data(tasks: HarnessTasks) -> None:
    """Build every task once (its dataset downloaded or read from the cache) so that a task whose data cannot be
    had fails before the models load, not after the first one was evaluated."""
    manager = tasks.task_manager()
    for name in tasks.names:
        try:
            manager.load([name])
        except Exception as exc:  # datasets/Hub raise many kinds; each one means this task cannot run
            raise RecipeError(
                f"harness task '{name}' ({tasks.sources[name]}) could not load its data: {type(exc).__name__}: "
                f"{exc}. Hub tasks download their dataset from the Hugging Face Hub: run once with Hub access "
                f"(unset HF_HUB_OFFLINE), or point HF_DATASETS_CACHE at a cache that holds it. Local tasks read "
                f"`dataset_kwargs.data_files` relative to the directory you run from."
            ) from exc


# ------------------------------------------------------------------------------------------- evaluation


class _LoadedModelNotice(logging.Filter):
    """HFLM warns twice per model that it was handed a model object, not a name; here that is the point."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "already-initialized model" not in message and "`pretrained` model kwarg is not" not in message


def _simple_evaluate(model, tokenizer, tasks: HarnessTasks, manager, settings: HarnessSettings) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    hf_log = logging.getLogger("lm_eval.models.huggingface")
    if not any(isinstance(f, _LoadedModelNotice) for f in hf_log.filters):
        hf_log.addFilter(_LoadedModelNotice())
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=settings.batch_size)
    return lm_eval.simple_evaluate(
        model=lm,
        tasks=list(tasks.names),
        task_manager=manager,
        limit=settings.limit,
        num_fewshot=settings.num_fewshot,
        apply_chat_template=settings.apply_chat_template,
        bootstrap_iters=settings.bootstrap_iters,
        log_samples=False,
    )


def run_harness(models: PolicyAndReference, tokenizer, tasks: HarnessTasks, settings: HarnessSettings) -> dict:
    """The harness on the reference, then on the policy: {task: entry} for eval.json's harness section."""
    import lm_eval

    manager = tasks.task_manager()
    outputs, timing = {}, {}
    started = time.time()
    with models.reference_model() as reference:
        outputs["reference"] = _simple_evaluate(reference, tokenizer, tasks, manager, settings)
    timing["reference"] = round(time.time() - started, 2)
    started = time.time()
    outputs["policy"] = _simple_evaluate(models.policy, tokenizer, tasks, manager, settings)
    timing["policy"] = round(time.time() - started, 2)
    recorded = {**asdict(settings), "lm_eval_version": lm_eval.__version__, "timing_s": timing}
    return side_by_side(outputs["reference"], outputs["policy"], tasks, recorded)


def _scores(output: dict) -> dict[str, dict]:
    return {**(output.get("results") or {}), **(output.get("groups") or {})}


def _number(value) -> float | None:
    # The harness writes "N/A" where a stderr cannot be computed (one example, or bootstrap_iters=0).
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def side_by_side(reference: dict, policy: dict, tasks: HarnessTasks, settings: dict) -> dict:
    """Each task (and group) the harness scored: its metrics under the harness's names ("acc,none",
    "exact_match,strict-match"), reference and policy side by side with their standard errors."""
    ref_scores, policy_scores = _scores(reference), _scores(policy)
    subtasks = {sub for subs in (policy.get("group_subtasks") or {}).values() for sub in subs}
    higher = policy.get("higher_is_better") or {}
    section = {}
    for task, scores in policy_scores.items():
        metrics = {}
        for key, value in scores.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, _, filter_name = key.partition(",")
            stderr_key = f"{metric}_stderr,{filter_name}"
            metrics[key] = {
                "reference": _number(ref_scores.get(task, {}).get(key)),
                "policy": _number(value),
                "stderr": {
                    "reference": _number(ref_scores.get(task, {}).get(stderr_key)),
                    "policy": _number(scores.get(stderr_key)),
                },
                "higher_is_better": (higher.get(task) or {}).get(metric),
            }
        section[task] = {
            "metrics": metrics,
            "source": tasks.sources.get(task, "subtask" if task in subtasks else task),
            "top_level": task not in subtasks,
            "n_samples": (policy.get("n-samples") or {}).get(task),
            "num_fewshot": (policy.get("n-shot") or {}).get(task),
            "version": (policy.get("versions") or {}).get(task),
            "subtasks": (policy.get("group_subtasks") or {}).get(task) or None,
            "settings": settings,
        }
    return section


# ------------------------------------------------------------------------------------------- eval.json


def read_eval(run_dir: Path) -> dict:
    """eval.json as it is now ({} when there is none); a broken one stops here rather than being replaced."""
    path = Path(run_dir) / EVAL_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise RecipeError(f"{path} is not valid JSON ({exc}): fix or move it; it is never overwritten.") from exc
    if not isinstance(data, dict):
        raise RecipeError(f"{path} does not hold a JSON object: fix or move it; it is never overwritten.")
    return data


def refuse_existing_tasks(run_dir: Path, names: list[str], force: bool) -> None:
    """Fail before loading anything when a requested task already has results in eval.json."""
    done = sorted(set(names) & set(read_eval(run_dir).get(SECTION) or {}))
    if done and not force:
        raise RecipeError(
            f"{Path(run_dir) / EVAL_FILE} already holds harness results for {', '.join(done)}: pass --force to "
            f'replace them (make eval-harness run={run_dir} tasks=... ARGS="--force").'
        )


def write_harness(run_dir: Path, section: dict) -> dict:
    """Merge the tasks just scored into eval.json's harness section; every other section, and the harness results
    of other tasks, stay as they are. Read at the last moment, so a `make eval` that finished meanwhile is kept."""
    data = read_eval(run_dir)
    data[SECTION] = {**(data.get(SECTION) or {}), **section}
    write_json(Path(run_dir) / EVAL_FILE, data)
    return data


# ------------------------------------------------------------------------------------------- the table


def harness_rows(section: dict, all_tasks: bool = False) -> list[tuple[str, str, str, str, str]]:
    """(task, metric, reference, policy, stderr reference / policy) rows; a group's subtasks only with all_tasks."""
    rows = []
    for task, entry in section.items():
        if not (all_tasks or entry.get("top_level", True)):
            continue
        for metric, values in entry["metrics"].items():
            stderr = values["stderr"]
            rows.append(
                (
                    task,
                    metric,
                    format_cell(values["reference"], ".4f"),
                    format_cell(values["policy"], ".4f"),
                    f"{format_cell(stderr['reference'], '.4f')} / {format_cell(stderr['policy'], '.4f')}",
                )
            )
    return rows


def format_harness(section: dict, all_tasks: bool = False) -> str:
    header = ("task", "metric", "reference", "policy", "stderr (reference / policy)")
    return console_table([header] + harness_rows(section, all_tasks))
