"""docs/methods.md: every `make` command on the page composes into a config that would train, and it is linked.

Commands are translated as the Makefile's `train-%` rule does, composed in-process with Hydra's compose API
(fast), validated and turned into the TRL config; one command also goes through the real launcher
(`scripts/train.py ... --cfg job`) to check that the translation matches what `make` runs.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from prefopt.recipe import load_recipe
from prefopt.validation import validate
from tests.conftest import CONF, REPO, compose_config

DOC = REPO / "docs" / "methods.md"
MAKE_VARIABLES = ("model", "dataset", "peft", "logger", "hardware")  # the Makefile's GROUP_OVERRIDES, in its order
METHODS = sorted(path.stem for path in (CONF / "method").glob("*.yaml"))


def doc_commands(text: str) -> list[str]:
    """`make ...` lines of fenced code blocks, then `make ...` inline code spans, each once, in page order."""
    fence = re.compile(r"^```[^\n]*\n(.*?)^```", flags=re.S | re.M)
    commands = [
        line.strip() for block in fence.findall(text) for line in block.splitlines() if line.strip().startswith("make ")
    ]
    commands += re.findall(r"`(make [^`]+)`", fence.sub("", text))
    return list(dict.fromkeys(commands))


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.%-]+):", (REPO / "Makefile").read_text(), flags=re.M))


def launcher_args(command: str) -> list[str] | None:
    """The arguments `make` gives scripts/train.py; None for a target that does not train. Raises ValueError."""
    words = shlex.split(command, comments=True)
    targets = [w for w in words[1:] if "=" not in w]
    variables = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    if len(targets) != 1:
        raise ValueError(f"expected one make target, found {targets}")
    target = targets[0]
    if not target.startswith("train-"):
        if target not in makefile_targets():
            raise ValueError(f"the Makefile has no target '{target}'")
        return None
    ignored = sorted(set(variables) - {*MAKE_VARIABLES, "ARGS"})
    if ignored:
        raise ValueError(
            f"make would silently ignore {', '.join(ignored)}=: train-% reads only "
            f"{'=, '.join(MAKE_VARIABLES)}= and ARGS="
        )
    args = [f"method={target.removeprefix('train-')}"]
    args += [f"{name}={variables[name]}" for name in MAKE_VARIABLES if variables.get(name)]
    return args + shlex.split(variables.get("ARGS", ""))  # $(ARGS) reaches the shell unquoted: split into words


def jobs(args: list[str]) -> list[list[str]]:
    """One override list per job: a multirun (-m) expands its sweeps as Hydra's basic sweeper does."""
    if not {"-m", "--multirun"} & set(args):
        return [args]
    overrides = OverridesParser.create().parse_overrides([a for a in args if a not in ("-m", "--multirun")])
    choices = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() else [o.input_line]
        for o in overrides
    ]
    return [list(job) for job in itertools.product(*choices)]


def check_command(command: str) -> None:
    """Compose, validate and build the TRL config for every job the command would start; fail naming it."""
    try:
        args = launcher_args(command)
        for job in jobs(args) if args is not None else []:
            cfg = compose_config(*job)
            recipe = load_recipe(cfg.method.recipe)
            validate(cfg, recipe)
            recipe.build_config(cfg)
    except Exception as exc:  # any failure is the command's failure: say which command and why
        raise AssertionError(f"docs/methods.md: `{command}` does not work: {type(exc).__name__}: {exc}") from None


COMMANDS = doc_commands(DOC.read_text())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_make_command_in_the_page_composes(command):
    check_command(command)


@pytest.mark.parametrize(
    "command",
    [
        'make train-dpo ARGS="method.betta=0.1"',  # misspelled key
        "make train-nope",  # no such method
        "make train-dpo beta=0.05",  # a variable make ignores: trains with the default
        'make train-simpo ARGS="method.beta=-1"',  # composes, but the launcher refuses it
        'make train-orpo ARGS="+method.max_prompt_length=9"',  # composes, but ORPOConfig has no such field
        'make train-dpo ARGS="-m method.beta=0.1,-0.5"',  # one job of the sweep is invalid
        "make tset",  # no such target
    ],
)
def test_a_broken_command_fails_with_the_command_named(command):
    with pytest.raises(AssertionError, match=re.escape(command)):
        check_command(command)


def test_translation_matches_what_the_launcher_composes():
    """The real `scripts/train.py ... --cfg job` prints the same config as the in-process composition."""
    single = [c for c in COMMANDS if (args := launcher_args(c)) and "-m" not in args]
    command = max(single, key=lambda c: len(launcher_args(c)))  # the one with the most overrides
    args = launcher_args(command)
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
    trained = {launcher_args(c)[0].removeprefix("method=") for c in COMMANDS if launcher_args(c)}
    assert set(METHODS) <= trained, f"no `make train-<method>` command for {sorted(set(METHODS) - trained)}"


@pytest.mark.parametrize("method", METHODS)
def test_every_method_config_says_how_to_run_it_and_links_the_page(method):
    lines = (CONF / "method" / f"{method}.yaml").read_text().splitlines()
    header = "\n".join(line for line in itertools.takewhile(lambda line: line.startswith("#"), lines))
    assert f"make train-{method}" in lines[0], "the first line says how to run it"
    assert "docs/methods.md" in header


def test_readme_links_the_page():
    assert "docs/methods.md" in (REPO / "README.md").read_text()
