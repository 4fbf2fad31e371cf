"""scripts/new_recipe.py in a temporary copy of the repository: copy, train the copy, refuse to overwrite, --force."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import FAST, REPO


@pytest.fixture
def repo(tmp_path):
    """recipes/, conf/ and scripts/ copied, so the real tree is never modified."""
    root = tmp_path / "repo"
    for folder in ("recipes", "conf", "scripts"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def in_copy(root, *command, timeout=60) -> subprocess.CompletedProcess:
    """A command run in the copied repository, its recipes/ taking precedence over the installed one."""
    return subprocess.run(
        list(command),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(root)},
    )


def train_in_copy(root, method, run_dir) -> tuple[dict, dict]:
    """(metrics.json, eval.json) of a tiny run of `method` trained by the copy's scripts/train.py."""
    trained = in_copy(
        root,
        sys.executable,
        str(root / "scripts" / "train.py"),
        f"method={method}",
        *FAST,
        f"hydra.run.dir={run_dir}",
        timeout=600,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    return tuple(json.loads((run_dir / name).read_text()) for name in ("metrics.json", "eval.json"))


def new_recipe(root, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "new_recipe.py"), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )


def without_timings(result):
    """A metrics.json or eval.json without what differs between identical runs: the method's name and the clock."""
    if not isinstance(result, dict):
        return result
    return {
        key: without_timings(value)
        for key, value in result.items()
        if key not in ("method", "written_by", "wall_time_s", "timing_s")
        and not key.endswith(("_runtime", "_per_second", "_time"))
    }


HEALTH_RULES = """
import sys
from pathlib import Path
import prefopt.config
from prefopt.config import compose_config
prefopt.config.CONF = Path("conf").resolve()  # the copy's conf/, where my_dpo.yaml is
from prefopt.health import health_callbacks
from prefopt.recipe import load_recipe
for method in sys.argv[1:]:
    cfg = compose_config(f"method={method}")
    (monitor,) = health_callbacks(cfg, load_recipe(cfg.method.recipe))
    print(method, monitor.loss_at_start, monitor.rewards_are_log_ratios, monitor.thresholds)
"""


def test_a_copy_trains_and_evaluates_exactly_as_its_original_and_gets_its_health_rules(repo, tmp_path):
    """`make new-recipe` then `make train-my_dpo`: nothing else to wire, and the library treats the copy as the original."""
    result = new_recipe(repo, "dpo", "my_dpo")
    assert result.returncode == 0, result.stderr
    assert "make train-my_dpo" in result.stdout

    config = yaml.safe_load((repo / "conf" / "method" / "my_dpo.yaml").read_text())
    original = yaml.safe_load((REPO / "conf" / "method" / "dpo.yaml").read_text())
    assert (config["name"], config["recipe"]) == ("my_dpo", "recipes.my_dpo")
    assert {k: v for k, v in config.items() if k not in ("name", "recipe")} == {
        k: v for k, v in original.items() if k not in ("name", "recipe")
    }
    assert (
        (repo / "conf" / "method" / "my_dpo.yaml").read_text().startswith("# my_dpo: copied from conf/method/dpo.yaml")
    )
    copied = (repo / "recipes" / "my_dpo.py").read_text()
    assert copied.endswith((REPO / "recipes" / "dpo.py").read_text())

    # A user's edit to the copy runs: the copy, not recipes/dpo.py, builds the trainer.
    marker = tmp_path / "my_dpo-was-used"
    (repo / "recipes" / "my_dpo.py").write_text(
        copied + f"\nimport pathlib as _pathlib\n_pathlib.Path({str(marker)!r}).touch()\n"
    )
    original, copy = (train_in_copy(repo, method, tmp_path / method) for method in ("dpo", "my_dpo"))
    assert marker.exists()
    assert (copy[0]["method"], copy[0]["status"], copy[0]["beta"]) == ("my_dpo", "completed", 0.1)
    assert copy[0]["eval_loss"] < copy[0]["before_training"]["eval_loss"]
    assert yaml.safe_load((tmp_path / "my_dpo" / "config.yaml").read_text())["method"]["recipe"] == "recipes.my_dpo"
    assert not (REPO / "recipes" / "my_dpo.py").exists() and not (REPO / "conf" / "method" / "my_dpo.yaml").exists()
    for ours, theirs in zip(original, copy):
        assert without_timings(ours) == without_timings(theirs)
    assert original[1]["pairs"]["source"] == copy[1]["pairs"]["source"]

    rules = in_copy(repo, sys.executable, "-c", HEALTH_RULES, "dpo", "my_dpo")
    assert rules.returncode == 0, rules.stderr[-2000:]
    printed = dict(line.split(" ", 1) for line in rules.stdout.splitlines() if line.startswith(("dpo ", "my_dpo ")))
    dpo_rules, copy_rules = printed["dpo"], printed["my_dpo"]
    # The default's SFT term: no fixed starting loss, rewards still log-ratios; the copy has the same rules.
    assert dpo_rules == copy_rules and dpo_rules.startswith("None True")


def test_refuses_to_overwrite_without_force_and_overwrites_with_it(repo):
    assert new_recipe(repo, "dpo", "mine").returncode == 0
    (repo / "recipes" / "mine.py").write_text("# my edits\n")

    refused = new_recipe(repo, "ipo", "mine")
    assert refused.returncode == 2
    assert "recipes/mine.py and conf/method/mine.yaml already exist" in refused.stderr and "--force" in refused.stderr
    assert (repo / "recipes" / "mine.py").read_text() == "# my edits\n"

    forced = new_recipe(repo, "ipo", "mine", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "def build_trainer" in (repo / "recipes" / "mine.py").read_text()
    config = yaml.safe_load((repo / "conf" / "method" / "mine.yaml").read_text())
    assert (config["name"], config["recipe"], config["loss_type"]) == ("mine", "recipes.mine", ["ipo", "sft"])


def test_only_the_config_existing_is_also_refused(repo):
    (repo / "conf" / "method" / "taken.yaml").write_text("name: taken\n")
    refused = new_recipe(repo, "dpo", "taken")
    assert refused.returncode == 2 and "conf/method/taken.yaml already exists" in refused.stderr
    assert not (repo / "recipes" / "taken.py").exists(), "nothing is written when one target is taken"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("my-dpo", "must be a Python identifier"),
        ("2dpo", "must be a Python identifier"),
        ("class", "must be a Python identifier"),
        ("shared", "recipes/shared/ is a folder already"),
        ("dpo", "is the method being copied"),
    ],
)
def test_bad_names_are_refused_with_the_reason(repo, name, message):
    (repo / "recipes" / "shared").mkdir()
    result = new_recipe(repo, "dpo", name)
    assert result.returncode == 2 and message in result.stderr and f"name={name}" in result.stderr


def test_unknown_source_lists_the_methods(repo):
    result = new_recipe(repo, "dpoo", "mine")
    assert result.returncode == 2
    assert "from=dpoo: no conf/method/dpoo.yaml" in result.stderr and "dpo, ipo, kto, orpo" in result.stderr


def test_copying_an_experiment(repo):
    result = new_recipe(repo, "experiment/zephyr-dpo-qlora", "my-zephyr")
    assert result.returncode == 0, result.stderr
    assert 'make train-dpo ARGS="experiment=my-zephyr"' in result.stdout
    text = (repo / "conf" / "experiment" / "my-zephyr.yaml").read_text()
    assert text.startswith("# @package _global_\n# Copied from conf/experiment/zephyr-dpo-qlora.yaml")
    assert "experiment=my-zephyr" in text and "experiment=zephyr-dpo-qlora" not in text
    assert yaml.safe_load(text) == yaml.safe_load((REPO / "conf" / "experiment" / "zephyr-dpo-qlora.yaml").read_text())
    assert new_recipe(repo, "experiment/zephyr-dpo-qlora", "my-zephyr").returncode == 2


def test_list_shows_methods_with_their_module_and_experiments(repo):
    listing = new_recipe(repo, "--list")
    assert listing.returncode == 0
    assert any(line.split()[:2] == ["ipo", "recipes.dpo"] for line in listing.stdout.splitlines())
    assert "zephyr-dpo-qlora" in listing.stdout
    data = json.loads(new_recipe(repo, "--list", "--json").stdout)
    assert data["methods"]["kto"]["recipe"] == "recipes.kto" and data["methods"]["kto"]["recipe_file_exists"]
    assert data["experiments"]["llama3-8b-orpo"]["method"] == "orpo"
