"""prefopt/compat: every reliance on a third-party internal names something that exists in the installed version,
the installed versions are the ones the reliances were written for (else: what to recheck), and no module outside
prefopt/compat patches a third-party module."""

import inspect
import re

import pytest

from prefopt.compat import check as compat
from tests.conftest import REPO


def test_the_installed_libraries_are_the_versions_the_compatibility_layer_was_written_for():
    drift = compat.version_drift()
    assert not drift, "\n".join(drift)


@pytest.mark.parametrize("reliance", compat.all_reliances(), ids=lambda r: r.target)
def test_every_reliance_names_something_the_installed_library_has(reliance):
    if reliance.instance_attribute:  # set in __init__: the class's source must still set or read it
        owner_path, name = reliance.target.rsplit(".", 1)
        owner = compat.resolve(owner_path)
        sources = [
            inspect.getsource(cls) for cls in inspect.getmro(owner) if cls.__module__.split(".")[0] != "builtins"
        ]
        assert any(f".{name}" in source for source in sources), f"{reliance.target}: no longer in {owner.__name__}"
    else:
        try:
            compat.resolve(reliance.target)
        except (AttributeError, ImportError) as exc:
            pytest.fail(f"{reliance.target} ({reliance.how} in {reliance.where}): {exc}")


def test_a_version_change_names_each_reliance_to_recheck(monkeypatch):
    monkeypatch.setattr(compat, "installed_version", lambda library: "9.9.9" if library == "trl" else None)
    (message,) = compat.version_drift()
    assert message.startswith("trl 9.9.9 is installed, prefopt.compat was written for 1.16.0: recheck ")
    assert "trl.DPOTrainer._compute_loss (overridden in prefopt.trainers.FastDPOTrainer._compute_loss)" in message
    assert "WRITTEN_FOR['trl'] = '9.9.9'" in message


def test_no_module_outside_the_compatibility_layer_patches_a_third_party_module():
    libraries = "transformers|trl|wandb|datasets|accelerate|peft|lm_eval|torch"
    assignment = re.compile(rf"^\s*({libraries})(\.\w+)+\s*=[^=]|setattr\(\s*({libraries})\b", re.M)
    found = [
        f"{path.relative_to(REPO)}: {match.group(0).strip()}"
        for folder in ("prefopt", "recipes", "scripts")
        for path in (REPO / folder).rglob("*.py")
        if "compat" not in path.parts
        for match in assignment.finditer(path.read_text())
    ]
    assert not found, found


def test_docs_recipes_md_lists_every_reliance():
    page = (REPO / "docs" / "recipes.md").read_text()
    missing = [r.target for r in compat.all_reliances() if f"`{r.target}`" not in page]
    assert not missing, f"add to the table of docs/recipes.md: {missing}"
