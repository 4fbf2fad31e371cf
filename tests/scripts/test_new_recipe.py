"""scripts/new_recipe.py in a temporary copy of the repository: copy, train the copy (in a sweep, in compare-methods,
on the frontier, as its original), refuse to overwrite, --force."""

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
    """prefopt/, recipes/, conf/ and scripts/ copied, so the real tree is never modified."""
    root = tmp_path / "repo"
    for folder in ("prefopt", "recipes", "conf", "scripts"):
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


def sweep_in_copy(root, methods, sweep_dir) -> list[tuple[dict, dict]]:
    """(metrics.json, eval.json) of each job of a tiny multirun over `methods`, by the copy's scripts/train.py."""
    trained = in_copy(
        root,
        sys.executable,
        str(root / "scripts" / "train.py"),
        "-m",
        f"method={','.join(methods)}",
        *FAST,
        "dataset.num_train=64",  # 4 steps x 8 pairs train on half: auto precomputes the reference only in a sweep
        f"hydra.sweep.dir={sweep_dir}",
        timeout=600,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    jobs = [sweep_dir / str(job) for job in range(len(methods))]
    return [tuple(json.loads((job / name).read_text()) for name in ("metrics.json", "eval.json")) for job in jobs]


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
from prefopt.config import compose_config
from prefopt.health import health_callbacks
from prefopt.recipe import load_recipe
for method in sys.argv[1:]:
    cfg = compose_config(f"method={method}")
    (monitor,) = health_callbacks(cfg, load_recipe(cfg.method.recipe))
    print(method, monitor.loss_at_start, monitor.rewards_are_log_ratios, monitor.thresholds)
"""


COMPARED = """
import json, sys
sys.path.insert(0, "scripts")
import compare_methods
print(json.dumps({
    "available": compare_methods.available_methods(),
    "commands": [c.command(compare_methods.REPO / "run", [])[2:] for c in compare_methods.parse_methods(sys.argv[1])],
}))
"""


def test_a_copy_trains_sweeps_compares_and_plots_exactly_as_its_original(repo, tmp_path):
    """`make new-recipe` then `make train-my_dpo`: nothing else to wire, and the library treats the copy as the
    original: the same run, the same health rules, the sweep's reference cache, compare-methods and the frontier."""
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
    sweep = tmp_path / "sweep"
    original, copy = sweep_in_copy(repo, ["dpo", "my_dpo"], sweep)
    assert marker.exists()
    assert (copy[0]["method"], copy[0]["status"], copy[0]["beta"]) == ("my_dpo", "completed", 0.1)
    assert copy[0]["eval_loss"] < copy[0]["before_training"]["eval_loss"]
    config = yaml.safe_load((sweep / "1" / "config.yaml").read_text())
    assert config["method"]["recipe"] == "recipes.my_dpo"
    assert not (REPO / "recipes" / "my_dpo.py").exists() and not (REPO / "conf" / "method" / "my_dpo.yaml").exists()
    for ours, theirs in zip(original, copy):
        assert without_timings(ours) == without_timings(theirs)
    assert original[1]["pairs"]["source"] == copy[1]["pairs"]["source"]
    # In a sweep, the copy precomputes its reference as its original does, and finds the original's cache.
    for job in ("0", "1"):
        assert yaml.safe_load((sweep / job / "config.yaml").read_text())["method"]["precompute_ref_log_probs"] is True
    assert "reference log-probs for train: reused from" in (sweep / "1" / "train.log").read_text()

    # compare-methods offers the copy and trains it through the same launcher; the frontier labels it as its original.
    compared = in_copy(repo, sys.executable, "-c", COMPARED, "dpo,my_dpo")
    assert compared.returncode == 0, compared.stderr[-2000:]
    listed = json.loads(compared.stdout.splitlines()[-1])
    assert "my_dpo" in listed["available"] and "dpo" in listed["available"]
    assert [command[:1] for command in listed["commands"]] == [["method=dpo"], ["method=my_dpo"]]
    frontier = in_copy(repo, sys.executable, "scripts/plot_frontier.py", str(sweep), "--json")
    assert frontier.returncode == 0, frontier.stderr[-2000:]
    points = json.loads(frontier.stdout)["points"]
    assert sorted(p["method"] for p in points) == ["dpo+sft", "my_dpo+sft"]
    assert points[0]["kl"] == points[1]["kl"] and points[0]["pass_rate"] == points[1]["pass_rate"]

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
    assert "from=dpoo: no conf/method/dpoo.yaml" in result.stderr and "dpo, ipo, kto, online-dpo, orpo" in result.stderr


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
