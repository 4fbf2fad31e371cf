"""README.md and every docs/ page: the commands run as written, the overrides compose, the paths and links exist.

The checks themselves are in tests/docs/doc_checks.py; the second half of this module shows that each of them fails
on a planted mistake, naming it.
"""

from __future__ import annotations

import re
import shlex

import pytest

from tests.conftest import REPO
from tests.docs import doc_checks
from tests.docs.doc_checks import FORBIDDEN, PAGES

README = REPO / "README.md"


def page_id(page) -> str:
    return str(page.relative_to(REPO))


def cases(collect) -> list:
    return [
        pytest.param(page, item, id=f"{page_id(page)}: {item.split('  #')[0].strip()}")
        for page in PAGES
        for item in collect(page.read_text())
    ]


@pytest.mark.parametrize(("page", "command"), cases(doc_checks.commands))
def test_every_command_runs_as_written(page, command):
    doc_checks.check_command(command, doc_checks.created_names(page.read_text()))


@pytest.mark.parametrize(("page", "mention"), cases(doc_checks.target_mentions))
def test_every_make_target_named_in_the_text_exists(page, mention):
    doc_checks.check_target_mention(mention, doc_checks.created_names(page.read_text()))


def test_every_make_target_is_documented():
    """Each target `make help` lists is run or named on some page."""
    named = set()
    for page in PAGES:
        text = page.read_text()
        for command in doc_checks.commands(text) + doc_checks.target_mentions(text):
            words = command.split()
            named.update(w for w in words[1:] if words[0] == "make" and "=" not in w)
    listed = set(re.findall(r"^([A-Za-z0-9_%-]+):.*## ", doc_checks.makefile_text(), flags=re.M))
    documented = {"train-%" if t.startswith("train-") and t not in listed else t for t in named}
    assert not listed - documented, f"no page runs or names make {sorted(listed - documented)}"


@pytest.mark.parametrize(("page", "override"), cases(doc_checks.inline_overrides))
def test_every_override_in_the_text_composes(page, override):
    doc_checks.check_override(override)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_repository_path_named_exists(page):
    text = page.read_text()
    created = doc_checks.created_names(text)
    missing = [path for path in doc_checks.repository_paths(text) if not doc_checks.path_exists(path, created)]
    assert not missing, f"{page_id(page)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_link_reaches_a_file_and_heading(page):
    assert not doc_checks.broken_links(page, page.read_text())


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_development_history_or_files_users_lack(page):
    text = page.read_text().lower()
    found = [word for word in FORBIDDEN if word.lower() in text]
    assert not found, f"{page_id(page)} mentions {found}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_page_has_commands(page):
    assert doc_checks.commands(page.read_text()), "a page of this project shows how to run what it describes"


def test_readme_is_a_front_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    commands = [shlex.split(c, comments=True) for c in doc_checks.commands(text)]
    assert ["make", "train-dpo"] in commands and ["make", "test"] in commands


def test_readme_links_every_docs_page():
    linked = {target.split("#")[0] for target in doc_checks.LINK.findall(README.read_text())}
    unlinked = [page_id(p) for p in PAGES[1:] if page_id(p) not in linked]
    assert not unlinked, f"README.md does not link {unlinked}"


def test_readme_layout_names_only_what_exists():
    """The layout block: each entry's first word exists, and every file or folder named in it exists under it."""
    section = README.read_text().split("## Layout", 1)[1]
    block = doc_checks.FENCE.search(section).group(2)
    entries = re.split(r"\n(?=\S)", block.strip())
    missing = []
    for entry in entries:
        top, _, rest = entry.partition(" ")
        if not (REPO / top).exists():
            missing.append(top)
            continue
        if (REPO / top).is_dir():
            names = re.findall(r"(?<![\w/.])([a-z_][\w.-]*(?:/[\w.-]+)*(?:\.py|\.yaml|\.sh|\.md|/))", rest)
            missing += [f"{top}{name}" for name in names if not (REPO / top / name).exists()]
    assert not missing, f"README.md's layout names {missing}"


# Each check fails on a planted mistake, naming it.


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
        "make eval",  # the target needs run=
        "make train-dpo launcher=ddpp",  # no conf/launcher/ddpp.yaml
        'make check-data ARGS="--jsn"',  # an option the script does not have
        'make pairs ARGS="num_promts=4"',  # misspelled key of conf/make_pairs.yaml
        'make compare-methods ARGS="train.max_step=60"',  # misspelled key, for every compared method
        "make sweep-beta betas=0.1,-1 logger=none",  # one beta of the sweep is invalid
        "python scripts/nope.py",  # no such script
        "python scripts/evaluate.py outputs/run --max-promts 4",  # an option the script does not have
        "bash bench/gpu.sh --variant lora",  # gpu.sh passes its options to bench/gpu_dpo.py, which lacks this one
        "make train-my_dpo",  # a method no page creates
    ],
)
def test_a_broken_command_fails_with_the_command_named(command):
    with pytest.raises(AssertionError, match=re.escape(command)):
        doc_checks.check_command(command)


def test_a_command_may_train_what_the_page_created_first():
    text = "```bash\nmake new-recipe from=dpo name=my_dpo\nmake train-my_dpo\n```\n"
    created = doc_checks.created_names(text)
    assert created == {"my_dpo": "dpo"}
    doc_checks.check_command("make train-my_dpo", created)
    assert doc_checks.path_exists("recipes/my_dpo.py", created)


@pytest.mark.parametrize(
    "override", ["method.betta=0.1", "dataset.pth=x", "hydra.sweeper.n_trial=4", "launcher=ddpp", "hardware=48gb"]
)
def test_an_override_that_does_not_compose_fails(override):
    with pytest.raises(AssertionError, match=re.escape(override)):
        doc_checks.check_override(override)


def test_overrides_compose_under_their_group_and_make_variables_pass():
    for override in ("dataset.columns.prompt=question", "ref.adapter_path=", "hydra.launcher.partition=gpu"):
        doc_checks.check_override(override)
    for override in ("betas=0.01,1", "gpus=8", "launcher=zero3", "model=", "num_prompts=16"):
        doc_checks.check_override(override)


def test_missing_paths_broken_links_and_forbidden_words_are_found(tmp_path):
    text = (
        "See `prefopt/nope.py`, `tests/scripts/test_train.py::test_nope`, `prefopt/memory.py` and "
        "[methods](docs/methods.md#no-such-heading), [gone](docs/gone.md), [ok](docs/methods.md#2-which-method-when).\n"
    )
    paths = doc_checks.repository_paths(text)
    assert [p for p in paths if not doc_checks.path_exists(p, {})] == [
        "prefopt/nope.py",
        "tests/scripts/test_train.py::test_nope",
        "docs/gone.md",
    ]
    broken = doc_checks.broken_links(REPO / "README.md", text)
    assert broken == [
        "docs/methods.md#no-such-heading: methods.md has no heading #no-such-heading",
        "docs/gone.md: no such file",
    ]
    assert doc_checks.path_exists("tests/scripts/test_train.py::test_qlora_trains_on_cpu", {})
    assert doc_checks.path_exists("prefopt/memory", {})  # a module, however it is split later


@pytest.mark.parametrize("mention", ["make evall", "make train-nope"])
def test_a_target_named_in_the_text_must_exist(mention):
    with pytest.raises(AssertionError, match=re.escape(mention)):
        doc_checks.check_target_mention(mention, {})
