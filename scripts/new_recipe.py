"""Copy a recipe to start your own: `python scripts/new_recipe.py dpo my_dpo` (`make new-recipe from=dpo name=my_dpo`).

A method copy writes recipes/my_dpo.py and conf/method/my_dpo.yaml (name and recipe rewritten), so `make train-my_dpo`
trains it at once. `experiment/zephyr-dpo-qlora my_exp` copies an experiment file. `--list` shows what there is.
Existing files are never overwritten without --force.
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import sys
from pathlib import Path

import yaml

from prefopt.errors import RecipeError

ROOT = Path(__file__).resolve().parents[1]  # the checkout this script belongs to

EXPERIMENT_PREFIX = "experiment/"
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # what Hydra takes as `experiment=<name>` unquoted


def method_file(root: Path, method: str) -> Path:
    return root / "conf" / "method" / f"{method}.yaml"


def module_file(root: Path, module: str) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def check_method_name(root: Path, name: str) -> None:
    # The name becomes a module (recipes.<name>) and a make target (train-<name>).
    if not name.isidentifier() or keyword.iskeyword(name):
        raise RecipeError(
            f"name={name}: must be a Python identifier (letters, digits and _, not starting with a digit, "
            f"not a keyword), because it becomes the module recipes/{name}.py. Try name={_identifier(name)}."
        )
    if (root / "recipes" / name).is_dir():
        raise RecipeError(f"name={name}: recipes/{name}/ is a folder already; pick another name.")


def _identifier(name: str) -> str:
    fixed = re.sub(r"\W", "_", name)
    return fixed if fixed and not fixed[0].isdigit() else f"my_{fixed}"


def refuse_overwrite(root: Path, targets: list[Path], force: bool, source: str, name: str) -> None:
    taken = [t for t in targets if t.exists()]
    if taken and not force:
        names = " and ".join(str(t.relative_to(root)) for t in taken)
        raise RecipeError(
            f"{names} already {'exists' if len(taken) == 1 else 'exist'}: pick another name, or overwrite with --force "
            f"(make new-recipe from={source} name={name} force=1)."
        )


def copy_method(root: Path, source: str, name: str, force: bool = False) -> list[Path]:
    """recipes/<source's module>.py -> recipes/<name>.py and conf/method/<source>.yaml -> conf/method/<name>.yaml."""
    source_config = method_file(root, source)
    if not source_config.is_file():
        raise RecipeError(
            f"from={source}: no {source_config.relative_to(root)}. Methods: {', '.join(sorted(methods(root)))}; "
            f"experiments are copied with from=experiment/<name>."
        )
    check_method_name(root, name)
    if name == source:
        raise RecipeError(f"name={name} is the method being copied: pick a new name.")
    text = source_config.read_text()
    module = (yaml.safe_load(text) or {}).get("recipe")
    if not isinstance(module, str) or not re.search(r"^recipe:", text, re.M) or not re.search(r"^name:", text, re.M):
        raise RecipeError(f"{source_config.relative_to(root)} needs top-level `name:` and `recipe:` keys to be copied.")
    source_module = module_file(root, module)
    if not source_module.is_file():
        raise RecipeError(
            f"{source_config.relative_to(root)} names recipe {module}, but {source_module} does not exist."
        )

    new_module = root / "recipes" / f"{name}.py"
    new_config = method_file(root, name)
    refuse_overwrite(root, [new_module, new_config], force, source, name)

    new_module.write_text(
        f"# Copied from {source_module.relative_to(root)} by `make new-recipe from={source} name={name}`. "
        f"Train: `make train-{name}`; config: conf/method/{name}.yaml.\n" + source_module.read_text()
    )
    new_config.write_text(method_config_copy(text, source, name, source_config.relative_to(root)))
    return [new_module, new_config]


def method_config_copy(text: str, source: str, name: str, source_path: Path) -> str:
    """The method config with name/recipe pointing at the copy; inline comments and the rest kept as they are."""
    text = re.sub(r"^name:[ \t]*\S+", f"name: {name}", text, count=1, flags=re.M)
    text = re.sub(r"^recipe:[ \t]*\S+", f"recipe: recipes.{name}", text, count=1, flags=re.M)
    text = re.sub(rf"make train-{re.escape(source)}(?![\w-])", f"make train-{name}", text)
    header = (
        f"# {name}: copied from {source_path} by `make new-recipe`. Run: `make train-{name}`; "
        f"its code: recipes/{name}.py.\n"
    )
    return header + text


def copy_experiment(root: Path, source: str, name: str, force: bool = False) -> list[Path]:
    """conf/experiment/<source>.yaml -> conf/experiment/<name>.yaml, with its run command renamed."""
    folder = root / "conf" / "experiment"
    source_file = folder / f"{source}.yaml"
    if not source_file.is_file():
        raise RecipeError(
            f"from={EXPERIMENT_PREFIX}{source}: no conf/experiment/{source}.yaml. "
            f"Experiments: {', '.join(sorted(experiments(root))) or 'none yet'}."
        )
    if not EXPERIMENT_NAME.match(name):
        raise RecipeError(f"name={name}: an experiment name takes letters, digits, - and _ (e.g. my-zephyr-dpo).")
    if name == source:
        raise RecipeError(f"name={name} is the experiment being copied: pick a new name.")
    target = folder / f"{name}.yaml"
    refuse_overwrite(root, [target], force, EXPERIMENT_PREFIX + source, name)
    lines = re.sub(rf"experiment={re.escape(source)}(?![\w-])", f"experiment={name}", source_file.read_text())
    lines = lines.splitlines(keepends=True)
    # Hydra reads `# @package _global_` from the top of the file: the note goes right after it.
    at = 1 if lines and lines[0].startswith("# @package") else 0
    lines.insert(at, f"# Copied from conf/experiment/{source}.yaml by `make new-recipe`; edit the values below.\n")
    target.write_text("".join(lines))
    return [target]


def experiment_method(path: Path) -> str:
    """The method an experiment selects (`override /method: dpo`): train-<method> must name the same one, because a
    command-line `method=` wins over the experiment's choice."""
    for entry in (yaml.safe_load(path.read_text()) or {}).get("defaults", []):
        if isinstance(entry, dict) and "override /method" in entry:
            return str(entry["override /method"])
    return "dpo"  # the experiment keeps conf/train.yaml's default method


def _description(path: Path) -> str:
    """The first comment line that is not Hydra's package header: what the file says about itself."""
    for line in path.read_text().splitlines():
        if line.startswith("#") and not line.startswith("# @package"):
            return line.lstrip("# ").split(" Run:")[0].strip()  # the how-to-run part has its own column
        if line.strip() and not line.startswith("#"):
            break
    return ""


def methods(root: Path) -> dict[str, dict]:
    found = {}
    for path in sorted((root / "conf" / "method").glob("*.yaml")):
        module = (yaml.safe_load(path.read_text()) or {}).get("recipe", "")
        found[path.stem] = {
            "recipe": module,
            "recipe_file_exists": module_file(root, module).is_file() if module else False,
            "description": _description(path),
        }
    return found


def experiments(root: Path) -> dict[str, dict]:
    return {
        path.stem: {"method": experiment_method(path), "description": _description(path)}
        for path in sorted((root / "conf" / "experiment").glob("*.yaml"))
    }


def print_listing(root: Path) -> None:
    listed = methods(root)
    width = max([len(m) for m in listed] + [6])
    module_width = max([len(i["recipe"]) for i in listed.values()] + [6])
    print("methods (make train-<method>; copy: make new-recipe from=<method> name=<new>):")
    for method, info in listed.items():
        missing = "" if info["recipe_file_exists"] else "  [recipe module missing]"
        print(f"  {method:<{width}}  {info['recipe']:<{module_width}}  {info['description']}{missing}")
    exps = experiments(root)
    print(
        'experiments (make train-<its method> ARGS="experiment=<name>"; copy: make new-recipe from=experiment/<name> name=<new>):'
    )
    width = max([len(e) for e in exps] + [6])
    for exp, info in exps.items():
        print(f"  {exp:<{width}}  {info['method']:<6}  {info['description']}")
    if not exps:
        print("  (none)")


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", help="a method (dpo, kto, ...) or experiment/<name>")
    parser.add_argument("name", nargs="?", help="the new method's name (a Python identifier) or experiment's name")
    parser.add_argument("--force", action="store_true", help="overwrite files that already exist")
    parser.add_argument("--list", action="store_true", help="list methods with their recipe module, and experiments")
    parser.add_argument("--json", action="store_true", help="with --list: one JSON object")
    args = parser.parse_args(argv)

    if args.list:
        if args.json:
            print(json.dumps({"methods": methods(root), "experiments": experiments(root)}))
        else:
            print_listing(root)
        return 0
    if not args.source or not args.name:
        parser.error("give FROM and NAME (e.g. `dpo my_dpo`, or `experiment/zephyr-dpo-qlora my_exp`), or --list")
    try:
        if args.source.startswith(EXPERIMENT_PREFIX):
            written = copy_experiment(root, args.source[len(EXPERIMENT_PREFIX) :], args.name, args.force)
            run = f'make train-{experiment_method(written[0])} ARGS="experiment={args.name}"'
        else:
            written = copy_method(root, args.source, args.name, args.force)
            run = f"make train-{args.name}"
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for path in written:
        print(f"wrote {path.relative_to(root)}")
    print(f"edit it, then run: {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
