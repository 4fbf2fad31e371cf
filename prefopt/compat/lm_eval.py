"""lm-evaluation-harness internals: its index of task YAML files."""

from __future__ import annotations

from prefopt.compat import Reliance

RELIANCES = [
    Reliance(
        "lm-eval",
        "lm_eval.tasks._index.TaskIndex",
        "read",
        "prefopt.evaluation.harness",
        "the task and group names defined by local YAML files (build, entry_from_path), before a TaskManager loads "
        "them: an unknown name fails before any model loads",
    ),
    Reliance("lm-eval", "lm_eval.tasks._index.Kind", "read", "prefopt.evaluation.harness", "task, group or py task"),
]


def task_index():
    """(Kind, TaskIndex) of the installed harness."""
    from lm_eval.tasks._index import Kind, TaskIndex

    return Kind, TaskIndex
