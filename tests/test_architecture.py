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
    # To move to tinydeploy.costs.figures (the engine registry's cost) with the pipeline's restructuring,
    # which is under way in parallel: the nearest-prototype stage's latency.
    "tinydeploy/optimize/pipeline.py": {"latency_estimate_ms"},
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
