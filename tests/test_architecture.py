"""The house rules that code review alone would let slip: the layers import downwards only
(the import-linter contracts in pyproject.toml), and no module imports another in a cycle."""

import ast
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


NAMES = {"tflm", "c", "espidf", "arduino", "make"}  # the engines' and frameworks' names (tinydeploy/core/names.py)
# Literals that spell one of those names with another meaning: the make program, which builds
# a Makefile (the `make` framework's, or any other).
# Same spelling, other meaning: the make program; a board profile's [tflm] table named in its type checks.
OTHER_MEANINGS = {("tinydeploy/toolchain/build.py", "make"), ("tinydeploy/core/boards.py", "tflm")}


def name_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal in Python source that is a whole engine or framework
    name: not prose that contains one, and not a field's key that happens to be spelled the same
    (a dict key, a subscript, the key of .get(): a board's [tflm] table, a device's "tflm" field),
    nor a piece of an f-string."""
    tree = ast.parse(source)
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys.update(id(key) for key in node.keys if key is not None)
        elif isinstance(node, ast.Subscript):
            keys.add(id(node.slice))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args:
            keys.add(id(node.args[0]))
        elif isinstance(node, ast.JoinedStr):
            keys.update(id(part) for part in node.values)
    return sorted((node.lineno, node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES
                  and id(node) not in keys)


@pytest.mark.unit
def test_engine_and_framework_names_are_written_once():
    """An engine's or framework's name is a constant of tinydeploy/core/names.py; everywhere else
    (the registries too) uses the constant, so a renamed engine is renamed in one line."""
    definition = ROOT / "tinydeploy" / "core" / "names.py"
    found = [f"{path.relative_to(ROOT)}:{line}: {text!r}"
             for path in sorted((ROOT / "tinydeploy").rglob("*.py")) if path != definition
             for line, text in name_literals(path.read_text())
             if (str(path.relative_to(ROOT)), text) not in OTHER_MEANINGS]
    assert not found, "use tinydeploy.core.names' constants:\n" + "\n".join(found)
    from tinydeploy.core import names
    assert set(names.ENGINE_NAMES) | set(names.FRAMEWORK_NAMES) == NAMES
    assert sorted(text for _, text in name_literals(definition.read_text())) == sorted(NAMES)  # each defined there
    # what it looks for, and what it leaves alone
    assert name_literals('engine = info.get("engine", "tflm")\nf(framework="arduino", x=("c",))') == \
        [(1, "tflm"), (2, "arduino"), (2, "c")]
    assert name_literals('t = raw.get("tflm")\nd = {"tflm": 1}\nd["c"]\ns = "a c or make"\nf"{x}c"') == []


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


# Calls that compute a cost figure (the board's latency table summed over a model, TFLM's
# board arena, the arena margin): outside the costs layer only the engine registry makes them,
# so that inspect, search, optimize and render get one answer (tinydeploy.costs.figures).
COST_CALL = re.compile(r"(?<!def )\b(latency_estimate_ms|estimate_us|for_board|board_arena|arena_size)\(|"
                       r"margin_percent\s*/\s*100")
COST_HOMES = ("tinydeploy/costs/", "tinydeploy/codegen/engines.py")
COST_CALLS_ELSEWHERE = {
    # A measured layer beside the board's table entry for it: the table shown or judged, not a model's cost.
    "tinydeploy/device/profiling.py": {"estimate_us"},
    "tinydeploy/device/calibrate.py": {"estimate_us"},
}


@pytest.mark.unit
def test_cost_formulas_are_computed_only_in_the_costs_layer():
    found = []
    for path in sorted((ROOT / "tinydeploy").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name.startswith(COST_HOMES):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in COST_CALL.finditer(line.split("#")[0]):
                if (match.group(1) or "margin") not in COST_CALLS_ELSEWHERE.get(name, ()):
                    found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
    assert COST_CALL.search("need = arena.for_board(model, measured, board)")  # what it looks for
    assert COST_CALL.search("math.ceil(need * (1 + margin_percent / 100) / 16)")
    assert not COST_CALL.search("    def estimate_us(self, op: str, work: int) -> float:")
