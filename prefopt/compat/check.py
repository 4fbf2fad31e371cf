"""What the compatibility layer relies on, all of it, checked against the installed libraries (tests/prefopt/
test_compat.py)."""

from __future__ import annotations

import importlib
import importlib.metadata

from prefopt.compat import WRITTEN_FOR, Reliance, accelerate, datasets, lm_eval, models, transformers, trl, wandb


def all_reliances() -> list[Reliance]:
    return [r for module in (transformers, trl, wandb, accelerate, datasets, lm_eval, models) for r in module.RELIANCES]


def installed_version(library: str) -> str | None:
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return None


def version_drift() -> list[str]:
    """One message per library whose installed version differs from WRITTEN_FOR, listing what to recheck."""
    messages = []
    for library, written_for in WRITTEN_FOR.items():
        installed = installed_version(library)
        if installed is None or installed == written_for:
            continue
        targets = [f"{r.target} ({r.how} in {r.where})" for r in all_reliances() if r.library == library]
        messages.append(
            f"{library} {installed} is installed, prefopt.compat was written for {written_for}: recheck "
            + "; ".join(targets)
            + f", then set WRITTEN_FOR['{library}'] = '{installed}' in prefopt/compat/__init__.py."
        )
    return messages


def resolve(target: str):
    """The object a dotted target names: the longest importable module, then attributes."""
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(f"no module in {target}")
