"""`make mutants` mutates the pure core and nothing can undo the mutants (docs/testing.md).

The pure core is what import-linter's contract "The pure core and the contract import no I/O
library" names in pyproject.toml; mutmut's `only_mutate` must cover exactly its modules. The
copy mutmut tests against must hold the mutants: `also_copy` may not name the package (mutmut
copies it over the mutated files), and mutmut's virtualenv may not install the package (the
tests would import the working tree).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pure_core_files() -> set[str]:
    contract = next(
        c
        for c in PYPROJECT["tool"]["importlinter"]["contracts"]
        if c["name"].startswith("The pure core")
    )
    files: set[str] = set()
    for module in contract["source_modules"]:
        path = ROOT / module.replace(".", "/")
        if path.is_dir():
            files |= {str(p.relative_to(ROOT)) for p in path.glob("*.py") if p.stem != "__init__"}
        else:
            files.add(str(path.with_suffix(".py").relative_to(ROOT)))
    return files


def test_only_the_pure_core_is_mutated_and_all_of_it() -> None:
    mutmut = PYPROJECT["tool"]["mutmut"]
    assert set(mutmut["only_mutate"]) == pure_core_files()
    assert mutmut["source_paths"] == ["bridge/"]
    assert mutmut["pytest_add_cli_args_test_selection"] == ["tests/unit/"]


def test_nothing_copies_the_originals_over_the_mutants() -> None:
    for path in PYPROJECT["tool"]["mutmut"].get("also_copy", []):
        assert not path.rstrip("/").startswith("bridge"), path


def test_the_mutation_virtualenv_does_not_install_the_package() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("$(MUTANTS_VENV)/.installed:", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"mutmut==\d+\.\d+\.\d+", recipe.replace("$(MUTMUT_VERSION)", "3.8.1"))
    assert "-e ." not in recipe
    assert "MUTMUT_VERSION := 3.8.1" in makefile
