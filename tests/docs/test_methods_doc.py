"""docs/methods.md: it shows how to run every method, every method config links it, and the in-process composition
the docs checks use is what the real launcher composes.

Every command on the page is checked with the other pages' (tests/docs/test_docs_commands.py): through `make -n`,
then composed in-process with Hydra's compose API, validated and turned into the TRL config.
"""

from __future__ import annotations

import itertools
import shlex
import subprocess
import sys

import pytest
from omegaconf import OmegaConf, open_dict

from tests.conftest import CONF, REPO, compose_config
from tests.docs import doc_checks

DOC = REPO / "docs" / "methods.md"
METHODS = sorted(path.stem for path in (CONF / "method").glob("*.yaml"))
COMMANDS = doc_checks.commands(DOC.read_text()) + doc_checks.target_mentions(DOC.read_text())


def launcher_args(command: str) -> list[str] | None:
    """The arguments `make` gives scripts/train.py (read from `make -n`); None for a command that does not train."""
    result = doc_checks.make_dry_run(shlex.split(command, comments=True)[1:])
    assert result.returncode == 0, f"`{command}`: {result.stderr}"
    lines = [line[1:] for line in doc_checks.script_lines(result.stdout) if line[0] == "scripts/train.py"]
    return lines[0] if lines else None


TRAINING = {command: launcher_args(command) for command in COMMANDS if command.startswith("make ")}


def test_translation_matches_what_the_launcher_composes():
    """The real `scripts/train.py ... --cfg job` prints the same config as the in-process composition."""
    single = {c: args for c, args in TRAINING.items() if args and "-m" not in args}
    command = max(single, key=lambda c: len(single[c]))  # the one with the most overrides
    args = single[command]
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args, "--cfg", "job"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"`{command}` -> scripts/train.py {' '.join(args)}:\n{result.stderr[-3000:]}"
    cfg = compose_config(*args)
    with open_dict(cfg):
        del cfg["hydra"]
    assert result.stdout.strip() == OmegaConf.to_yaml(cfg).strip(), command


def test_the_page_shows_how_to_run_every_method():
    trained = {args[0].removeprefix("method=") for args in TRAINING.values() if args}
    assert set(METHODS) <= trained, f"no `make train-<method>` command for {sorted(set(METHODS) - trained)}"


@pytest.mark.parametrize("method", METHODS)
def test_every_method_config_says_how_to_run_it_and_links_the_page(method):
    lines = (CONF / "method" / f"{method}.yaml").read_text().splitlines()
    header = "\n".join(line for line in itertools.takewhile(lambda line: line.startswith("#"), lines))
    assert f"make train-{method}" in lines[0], "the first line says how to run it"
    assert "docs/methods.md" in header


def test_readme_links_the_page():
    assert "docs/methods.md" in (REPO / "README.md").read_text()
