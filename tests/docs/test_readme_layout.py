"""The README's layout section names every script, benchmark, recipe and library module there is."""

import re

from tests.conftest import REPO


def test_the_layout_names_every_script_benchmark_recipe_and_library_module():
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.index("```", layout.index("```") + 3)]
    named = set(re.findall(r"[\w.]+\.(?:py|sh)|\w+/", layout))
    files = [p.name for folder in ("scripts", "bench", "recipes", "prefopt") for p in (REPO / folder).glob("*.*")]
    folders = [f"{p.name}/" for p in (REPO / "prefopt").iterdir() if p.is_dir() and p.name != "__pycache__"]
    missing = [n for n in files + folders if n.endswith((".py", ".sh", "/")) and n != "__init__.py" and n not in named]
    assert not missing, f"README.md's layout does not name {missing}"
