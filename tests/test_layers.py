"""Imports run one way: application (fashion2stage.app) -> models (detectors/, classifiers/) -> core (the rest of
fashion2stage). The contracts are in pyproject.toml ([tool.importlinter]); this runs them."""
import pkgutil
import subprocess
import sys
from pathlib import Path

from importlinter.api import read_configuration

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    # in a child process from the repository root: import-linter puts the working directory first on sys.path, so
    # the checkout is analysed, not an installed copy
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_core_module_is_under_the_core_contract():
    """A new core module must be added to the contract, or it could import upward unchecked."""
    contracts = read_configuration(str(ROOT / "pyproject.toml"))["contracts_options"]
    core = next(c for c in contracts if c["name"].startswith("core imports"))
    found = {f"fashion2stage.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "fashion2stage")])}
    # the package's own entry points re-export the application (lazily) and are not core
    assert found - {"fashion2stage.app", "fashion2stage.__main__"} == set(core["source_modules"])
