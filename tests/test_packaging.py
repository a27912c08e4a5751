"""The `inkscribe` package ships every code package and the models (pyproject.toml lists them explicitly)."""

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_code_package_is_in_the_distribution():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {str(p.parent.relative_to(REPO)).replace("/", ".") for top in ("core", "app_pages")
               for p in (REPO / top).rglob("__init__.py")}
    assert on_disk <= listed, f"add to pyproject.toml's packages: {sorted(on_disk - listed)}"
    assert "models" in listed  # the shipped weights, as package data
