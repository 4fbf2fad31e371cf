"""Every use of a third-party internal, in one place: what is patched or relied on, why, and the version it was
written for. One module per library; each lists its reliances in RELIANCES.

Upgrading a pin: tests/prefopt/test_compat.py fails while an installed version differs from WRITTEN_FOR, naming every
reliance to recheck for that library (prefopt.compat.check), and checks that each private name still exists. Recheck each (the tests that
hold the fast trainers to TRL's losses, metrics and gradients are the safety net for the trainer overrides), then
update WRITTEN_FOR.
"""

from __future__ import annotations

from dataclasses import dataclass

# The installed versions these reliances were written for and checked against (requirements.txt pins them).
WRITTEN_FOR = {
    "transformers": "5.24.0",
    "trl": "1.16.0",
    "wandb": "0.31.0",
    "accelerate": "1.15.0",
    "datasets": "5.2.0",
    "lm-eval": "0.4.13",
}


@dataclass(frozen=True)
class Reliance:
    """One third-party internal the project relies on.

    target: the dotted name it relies on, importable with getattr steps (e.g. trl.DPOTrainer._compute_loss);
    how: replaced (we assign it), wrapped (we call the original around ours), overridden (a subclass method),
        read (we read a private attribute or call a private function);
    where: the code of ours that does it; why: what breaks without it;
    instance_attribute: the last name is set on instances (in __init__), not defined on the class.
    """

    library: str
    target: str
    how: str
    where: str
    why: str
    instance_attribute: bool = False
