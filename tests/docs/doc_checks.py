"""Checks for the pages users read (README.md, docs/*.md): their commands run as written, their paths exist.

A page's commands are the `make ...`, `python ...` and `bash ...` lines of its fenced code blocks and its inline
code spans. A `make` command goes through `make -n` (nothing runs): the target must exist, every variable given must
change what make runs, and each script line make prints is checked as below. A script command names a file of the
repository and only options its source defines; for scripts/train.py, check_data.py, compare_methods.py and
make_pairs.py, the Hydra overrides are composed with the real conf/ (every job of a `-m` sweep), and the training
config is validated as the launcher validates it, placeholder paths aside. Every single-word `key=value` code span
must compose too (or be a variable the Makefile reads), every repository path a code span names must exist, and every
relative link must reach a file and, with `#anchor`, one of its headings.
"""

from __future__ import annotations

import functools
import itertools
import re
import shlex
import subprocess
import tempfile
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from prefopt.config import compose_config as compose_plain
from tests.conftest import CONF, REPO, compose_config, load_script

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FORBIDDEN = ("earlier session", "previous session", "last session", "DESIGN.md", "../shared")
TOP_LEVEL = ("prefopt/", "recipes/", "conf/", "scripts/", "tests/", "bench/", "docs/")
TOP_LEVEL_FILES = ("Makefile", "requirements.txt", "README.md", "pyproject.toml", "pytest.ini")
# Which config a script composes its Hydra overrides into.
CONFIG_OF_SCRIPT = {
    "scripts/train.py": "train",
    "scripts/check_data.py": "train",
    "scripts/compare_methods.py": "train",
    "scripts/make_pairs.py": "make_pairs",
}
HYDRA_FLAGS = {"-m", "--multirun"}
# Validation problems that only say a placeholder path (/models/my-sft-adapter) is not on this machine.
PLACEHOLDER_PATH = re.compile(r"does not exist|no adapter_config\.json there")
GROUPS = ("method", "model", "dataset", "peft", "ref", "hardware", "logger", "judge")
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", flags=re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
STAMP = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d")  # the Makefile's $(shell date ...)


class DocError(AssertionError):
    pass


def prose(text: str) -> str:
    """The page without its fenced code blocks."""
    return FENCE.sub("", text)


def fenced_lines(text: str) -> list[str]:
    """Lines of the fenced code blocks, a trailing backslash joining a line to the next."""
    lines = []
    for _, body in FENCE.findall(text):
        lines += body.replace("\\\n", " ").splitlines()
    return lines


def commands(text: str) -> list[str]:
    """`make`/`python`/`bash` commands of the fenced blocks, then of the inline code spans, each once, in order.

    An inline `make <target>` alone names the target in a sentence ("what `make eval` runs"): see target_mentions.
    """
    starts = ("make ", "python ", "bash ")
    found = [line.strip() for line in fenced_lines(text) if line.strip().startswith(starts)]
    found += [
        span.strip()
        for span in INLINE.findall(prose(text))
        if span.strip().startswith(starts) and span.strip() not in target_mentions(text)
    ]
    return list(dict.fromkeys(found))


def target_mentions(text: str) -> list[str]:
    """Inline code spans of the prose that are `make <target>` and nothing more."""
    return list(
        dict.fromkeys(s.strip() for s in INLINE.findall(prose(text)) if re.fullmatch(r"make [\w.%<>-]+", s.strip()))
    )


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.%-]+):", makefile_text(), flags=re.M))


def check_target_mention(mention: str, created: dict[str, str]) -> None:
    """`make X` names a target of the Makefile; `make train-X` a method of conf/method/ (or one the page creates)."""
    target = mention.removeprefix("make ")
    if target == "train-<method>" and "train-%" in makefile_targets() or target in makefile_targets():
        return  # an explicit target (train-sft-dpo) wins over the train-% pattern, as in make
    if target.startswith("train-") and "train-%" in makefile_targets():
        method = target.removeprefix("train-")
        if not ((CONF / "method" / f"{method}.yaml").is_file() or method in created):
            raise AssertionError(f"`{mention}`: no conf/method/{method}.yaml")
    elif target not in makefile_targets():
        raise AssertionError(f"`{mention}`: the Makefile has no target {target}")


def inline_overrides(text: str) -> list[str]:
    """Single-word `key=value` code spans of the prose (`method.beta=0.05`, `dataset.path=`, `hardware=40gb`)."""
    word = re.compile(r"^\+{0,2}~?[A-Za-z_][\w.\-/]*=\S*$")
    return list(dict.fromkeys(span for span in INLINE.findall(prose(text)) if word.match(span)))


@functools.cache
def makefile_text() -> str:
    return (REPO / "Makefile").read_text()


def makefile_variables() -> set[str]:
    return set(re.findall(r"\$\((\w+)\)", makefile_text()))


def created_names(text: str) -> dict[str, str]:
    """What the page's `make new-recipe from=X name=Y` commands create: {Y: X} (X a method or experiment/<name>)."""
    created = {}
    for command in commands(text):
        words = shlex.split(command, comments=True)
        if words[:2] == ["make", "new-recipe"]:
            variables = dict(w.split("=", 1) for w in words[2:] if "=" in w)
            if "from" in variables and "name" in variables:
                created[variables["name"]] = variables["from"]
    return created


def make_dry_run(words: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-n", *words], cwd=REPO, capture_output=True, text=True, timeout=60)


def script_lines(make_output: str) -> list[list[str]]:
    """The script invocations among the commands `make -n` printed, each as its words from the script on."""
    found = []
    for line in make_output.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for i, word in enumerate(words):
            if re.fullmatch(r"(scripts|bench)/\w+\.(py|sh)", word):
                found.append(words[i:])
                break
    return found


def check_make(words: list[str], created: dict[str, str]) -> None:
    targets = [w for w in words if "=" not in w and not w.startswith("-")]
    if len(targets) != 1:
        raise DocError(f"expected one make target, found {targets}")
    result = make_dry_run(words)
    if result.returncode != 0:
        raise DocError(f"`make -n` fails: {result.stderr.strip()[-500:]}")
    output = STAMP.sub("<time>", result.stdout)
    for word in words:
        if "=" in word:
            without = make_dry_run([w for w in words if w != word])
            if without.returncode == 0 and STAMP.sub("<time>", without.stdout) == output:
                raise DocError(f"make ignores {word.split('=')[0]}= here: `make -n` prints the same without it")
    for path in re.findall(r"conf/\S+\.yaml", output):
        if not (REPO / path).is_file():
            raise DocError(f"make would read {path}, which does not exist")
    lines = script_lines(result.stdout)
    if not lines and targets[0].startswith("train-"):
        raise DocError("make runs no script")
    for line in lines:
        check_script(line[0], line[1:], created)


def script_options(script: str) -> set[str]:
    """The --options a script's source defines (a shell script: also those of the scripts it runs)."""
    sources = [(REPO / script).read_text()]
    if script.endswith(".sh"):
        sources += [(REPO / called).read_text() for called in re.findall(r"(?:scripts|bench)/\w+\.py", sources[0])]
    return {option for source in sources for option in re.findall(r"[\"'](--[\w-]+)[\"']", source)}


def check_script(script: str, args: list[str], created: dict[str, str]) -> None:
    if not (REPO / script).is_file():
        raise DocError(f"no such script {script}")
    config = CONFIG_OF_SCRIPT.get(script)
    options = [a.split("=", 1)[0] for a in args if a.startswith("-") and not (config and a in HYDRA_FLAGS)]
    unknown = sorted(set(options) - script_options(script))
    if unknown:
        raise DocError(f"{script} has no option {', '.join(unknown)}")
    if config is None:
        return
    option_values = {args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--") and "=" not in a}
    overrides = [a for a in args if "=" in a and not a.startswith("-") and a not in option_values]
    if script == "scripts/compare_methods.py":
        compare = load_script(script)
        try:
            methods = compare.parse_methods(_option_value(args, "--methods") or ",".join(compare.available_methods()))
        except Exception as exc:  # RecipeError of the script's own module
            raise DocError(f"{script}: {exc}") from None
        runs = [[f"method={m.method}", *m.overrides, *overrides] for m in methods]
    else:
        runs = [[a for a in args if a in HYDRA_FLAGS] + overrides]
    for run in runs:
        for job in jobs(run):
            compose_and_validate(tuple(_resolve_created(job, created)), config)


def _option_value(args: list[str], option: str) -> str | None:
    for i, arg in enumerate(args):
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
        if arg == option and i + 1 < len(args):
            return args[i + 1]
    return None


def _resolve_created(overrides: list[str], created: dict[str, str]) -> list[str]:
    """A method or experiment the page creates first (make new-recipe) is composed as the one it copies."""
    resolved = []
    for override in overrides:
        key, _, value = override.partition("=")
        source = created.get(value)
        if source and key == "method" and "/" not in source:
            override = f"method={source}"
        elif source and key == "experiment" and source.startswith("experiment/"):
            override = f"experiment={source.removeprefix('experiment/')}"
        resolved.append(override)
    return resolved


def jobs(args: list[str]) -> list[list[str]]:
    """One override list per job: a multirun (-m) expands its sweeps as Hydra's basic sweeper does."""
    if not HYDRA_FLAGS & set(args):
        return [args]
    overrides = OverridesParser.create().parse_overrides([a for a in args if a not in HYDRA_FLAGS])
    choices = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() else [o.input_line]
        for o in overrides
    ]
    return [list(job) for job in itertools.product(*choices)]


@functools.cache
def compose_and_validate(overrides: tuple[str, ...], config: str = "train") -> None:
    """Compose (an unknown key is an error); a training config must also pass the launcher's checks."""
    if config != "train":
        compose_plain(*overrides, config_name=config)
        return
    from prefopt.model_setup import resolve_model_setup
    from prefopt.recipe import load_recipe
    from prefopt.validation import problems

    cfg = compose_config(*overrides)
    recipe = load_recipe(cfg.method.recipe)
    found = [p for p in problems(cfg, recipe, resolve_model_setup(cfg, recipe)) if not PLACEHOLDER_PATH.search(p)]
    if found:
        raise DocError("invalid config: " + "; ".join(found))


def check_command(command: str, created: dict[str, str] | None = None) -> None:
    """Fail with the command named when it would not do what the page says."""
    try:
        words = shlex.split(command, comments=True)
        if words[0] == "make":
            check_make(words[1:], created or {})
        elif words[0] in ("python", "bash"):
            check_script(words[1], words[2:], created or {})
        else:
            raise DocError(f"not a command the docs run: {words[0]}")
    except Exception as exc:  # any failure is the command's failure: say which command and why
        raise AssertionError(f"`{command}` does not work: {type(exc).__name__}: {exc}") from None


def override_contexts(key: str) -> list[list[str]]:
    """Config choices under which an override of `key` may apply: none, then each option of the group it sets."""
    top = key.lstrip("+~").split(".")[0]
    contexts = [[]]
    if top in GROUPS:
        contexts += [[f"{top}={p.stem}"] for p in sorted((CONF / top).glob("*.yaml"))]
    elif key.startswith("hydra.launcher."):
        contexts += [[f"hydra/launcher={p.stem}"] for p in sorted((CONF / "hydra" / "launcher").glob("*.yaml"))]
    elif key.startswith("hydra.sweeper."):
        contexts += [[f"hparams_search={p.stem}"] for p in sorted((CONF / "hparams_search").glob("*.yaml"))]
    return contexts


def check_override(override: str) -> None:
    """A `key=value` span composes (under some option of its group), or is a variable the Makefile reads."""
    key, _, value = override.partition("=")
    if key in makefile_variables() and (not value or key not in GROUPS):
        if key == "launcher" and value and not (CONF / "launcher" / f"{value}.yaml").is_file():
            raise AssertionError(f"`{override}`: no conf/launcher/{value}.yaml")
        return
    errors = []
    named_only = not value or re.fullmatch(r"<[^>]+>", value)  # `dataset.path=`, `ref.path=<folder>`: the key exists
    for config in ("train", "make_pairs"):
        for context in override_contexts(key) if config == "train" else [[]]:
            try:
                if named_only:
                    cfg = compose_plain(*context, config_name=config, output_dir=tempfile.gettempdir())
                    if OmegaConf.select(cfg, key, default=_ABSENT, throw_on_resolution_failure=False) is _ABSENT:
                        raise KeyError(f"no key {key}")
                else:
                    compose_plain(*context, override, config_name=config)
                return
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    raise AssertionError(f"`{override}` does not compose: {errors[0]}")


_ABSENT = object()


# A code span right after a source's name is a path in that repository: alignment-handbook `recipes/...`,
# xfactlab/orpo `scripts/...`, TRL KTO docs (`docs/source/...`).
EXTERNAL = re.compile(r"(?:alignment-handbook|\b[\w-]+/[\w.-]+|\bdocs) \(?$")


def repository_paths(text: str) -> list[str]:
    """Repository paths the page names in its code spans and links (placeholders with <, *, { aside)."""
    body = prose(text)
    words = [
        w
        for m in INLINE.finditer(body)
        if not EXTERNAL.search(body[max(0, m.start() - 40) : m.start()])
        for w in m.group(1).split()
    ]
    words += [target.split("#")[0] for target in LINK.findall(text) if not re.match(r"\w+:", target)]
    found = []
    for word in words:
        word = word.strip(",.;:()[]\"'")
        word = re.sub(r"^\w[\w.]*=", "", word)  # ref.adapter_path=prefopt/... names a path as a value
        if re.search(r"[<*{$]", word) or not word:
            continue
        if word.startswith(TOP_LEVEL) or word in TOP_LEVEL_FILES:
            found.append(word)
    return list(dict.fromkeys(found))


def path_exists(path: str, created: dict[str, str]) -> bool:
    """A file, folder or module (prefopt/evaluation: evaluation.py or evaluation/), or `file.py::test_name`."""
    path, _, test = path.partition("::")
    if any(path in (f"recipes/{n}.py", f"conf/method/{n}.yaml", f"conf/experiment/{n}.yaml") for n in created):
        return True
    target = REPO / path
    if test:
        return target.is_file() and re.search(rf"^\s*def {re.escape(test)}\b", target.read_text(), re.M) is not None
    return target.exists() or (not target.suffix and target.with_suffix(".py").is_file())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", prose(page.read_text()), flags=re.M)}


def broken_links(page: Path, text: str) -> list[str]:
    broken = []
    for target in LINK.findall(text):
        if re.match(r"\w+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: {linked.name} has no heading #{anchor}")
    return broken
