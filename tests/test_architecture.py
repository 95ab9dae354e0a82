"""The house rules that code review alone would let slip: the layers import downwards only
(the import-linter contracts in pyproject.toml), and no module imports another in a cycle."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.unit
def test_the_import_contracts_hold():
    done = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


ENGINE_OR_FRAMEWORK_TEST = re.compile(
    r"""(engine|framework)\w*(\.name|\[["'](engine|framework)["']\]|\.get\(["'](engine|framework)["'][^)]*\))?"""
    r"""\s*(==|!=|\bin\b)\s*[("']|["'](engine|framework)["'][^=!]{0,12}(==|!=)\s*["']"""
    r"""|["'](tflm|c|espidf|arduino|make)["']\s*(==|!=)""")


@pytest.mark.unit
def test_engines_and_frameworks_differ_only_inside_their_registries():
    """What differs by engine is in tinydeploy/codegen/engines.py, by framework in frameworks.py:
    elsewhere no code asks which engine or framework it has."""
    registries = {ROOT / "tinydeploy" / "codegen" / "engines.py", ROOT / "tinydeploy" / "codegen" / "frameworks.py"}
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in sorted((ROOT / "tinydeploy").rglob("*.py")) if path not in registries
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if ENGINE_OR_FRAMEWORK_TEST.search(line.split("#")[0])]
    assert not found, "\n".join(found)
    assert ENGINE_OR_FRAMEWORK_TEST.search('c_engine = device.get("engine") == "c"')  # what it looks for
    assert ENGINE_OR_FRAMEWORK_TEST.search('if options.framework != "espidf":')


FACES = {"__init__.py", "__main__.py", "cli.py", "api.py", "pytest_plugin.py", "display.py"}
LAYER_FOLDERS = {"flows", "optimize", "device", "toolchain", "codegen", "runtime", "costs", "core"}


@pytest.mark.unit
def test_the_package_root_holds_only_the_faces_and_the_layer_folders():
    """A module's path tells its layer: below the faces, every module sits in its layer's folder,
    and every layer folder is one the layers contract names."""
    package = ROOT / "tinydeploy"
    modules = {p.name for p in package.glob("*.py")}
    folders = {p.name for p in package.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert modules == FACES, sorted(modules ^ FACES)
    assert folders == LAYER_FOLDERS, sorted(folders ^ LAYER_FOLDERS)
    import tomllib
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    assert {name.strip() for layer in contract["layers"][1:] for name in layer.split(":")} == LAYER_FOLDERS
