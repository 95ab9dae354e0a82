import json
import re
import subprocess
import sys
import zipfile

import pytest

pytestmark = pytest.mark.host


def test_installed_wheel_finds_its_boards_templates_and_firmware(tmp_path):
    """A wheel installed elsewhere works with no source tree."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(root)], check=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("tinydeploy-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "tinydeploy/board_profiles/esp32dev.toml" in names
    assert "tinydeploy/templates/common/model_runner.cc.j2" in names
    assert "tinydeploy/firmware/td_protocol.c" in names
    assert {"tinydeploy/optimize/pipeline.py", "tinydeploy/codegen/cengine/lowering.py", "tinydeploy/api.py",
            "tinydeploy/templates/common/td_board.c.j2", "tinydeploy/templates/library/header.h.j2",
            "tinydeploy/codegen/library.py"} <= set(names)  # the subpackages and new templates
    # The C engine: its templates, kernels and the emulated board's start code and linker script.
    assert {"tinydeploy/templates/cengine/td_model.c.j2", "tinydeploy/templates/make/Makefile.j2",
            "tinydeploy/firmware/td_kernels.c", "tinydeploy/firmware/start_rv32.S",
            "tinydeploy/firmware/qemu_virt.ld", "tinydeploy/board_profiles/qemu-riscv32.toml"} <= set(names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = ("import json, sys; sys.path.insert(0, sys.argv[1]); import tinydeploy, tinydeploy.core.boards as b; "
             "from tinydeploy.core.resources import shipped; "
             "print(json.dumps([tinydeploy.__file__, sorted(b.load_boards()), "
             "(shipped('templates') / 'common' / 'platformio.ini.j2').is_file(), "
             "(shipped('firmware') / 'td_protocol.h').is_file()]))")
    out = subprocess.run([sys.executable, "-c", probe, str(target)], cwd=elsewhere, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    module_file, boards, has_template, has_firmware = json.loads(out)
    assert module_file.startswith(str(target))
    assert has_template and has_firmware
    assert {"esp32dev", "esp32-s3-devkitc-1", "esp32-c3-devkitm-1"} <= set(boards)


def _pyproject() -> dict:
    import tomllib
    from pathlib import Path
    return tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())


# Standard-library modules newer than Python 3.8, with the version that added each (the
# Python documentation's "Added in version" notes).
STDLIB_ADDED = {"tomllib": (3, 11), "zoneinfo": (3, 9), "graphlib": (3, 9)}


@pytest.mark.unit
def test_the_declared_python_has_every_standard_module_tinydeploy_imports():
    import ast
    import re
    from pathlib import Path
    lowest = tuple(int(x) for x in re.search(r">=\s*(\d+)\.(\d+)", _pyproject()["project"]["requires-python"]).groups())
    used = set()
    for source in (Path(__file__).resolve().parents[1] / "tinydeploy").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                used |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                used.add(node.module.split(".")[0])
    assert "tomllib" in used  # the module that made 3.10 unsupported
    too_new = {m: v for m, v in STDLIB_ADDED.items() if m in used and v > lowest}
    assert not too_new, f"requires-python allows {lowest}, but these modules are newer: {too_new}"


@pytest.mark.unit
def test_the_declared_esptool_has_the_write_flash_command_that_flash_runs():
    import inspect
    from packaging.requirements import Requirement
    from packaging.version import Version
    from tinydeploy.toolchain import flash
    assert '"write-flash"' in inspect.getsource(flash.flash_firmware)
    spec = next(Requirement(r).specifier for r in _pyproject()["project"]["dependencies"]
                if Requirement(r).name == "esptool")
    # `write-flash` (with a hyphen) is esptool v5's spelling; v4 knew only `write_flash`.
    assert not spec.contains(Version("4.9")) and spec.contains(Version("5.0"))
    installed = subprocess.run([sys.executable, "-m", "esptool", "write-flash", "--help"], capture_output=True,
                               text=True, timeout=60)
    assert installed.returncode == 0 and "<address>" in installed.stdout


BLOCKER = '''
import sys
from tinydeploy.core.errors import EXTRA_MODULES

class WithoutExtras:  # the core install: the extras' modules are not there
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in EXTRA_MODULES:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, WithoutExtras())
'''

CORE_RUN = '''
import json, sys
from tinydeploy.cli import main
from tinydeploy.core.errors import EXTRA_MODULES
from tinydeploy.device.virtual_device import VirtualDevice
model, out = sys.argv[1], sys.argv[2]
codes = [main(["inspect", model]), main(["render", model, "--board", "esp32dev", "--out", out + "/tflm"]),
         main(["render", model, "--board", "qemu-riscv32", "--out", out + "/c"])]
with VirtualDevice(model) as device:
    codes.append(main(["bench", "--port", device.open_tcp(0), "--expect-model", model, "--runs", "2", "--profile",
                       "--out", out + "/bench"]))
codes.append(main(["optimize", "--data", "digits", "--out", out + "/optimize"]))
print(json.dumps({"codes": codes, "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(EXTRA_MODULES))}))
'''


def test_the_core_commands_run_without_the_optimize_extra_and_the_others_name_it(int8_cnn, tmp_path):
    """With the optimize extra's modules absent, inspect, render (both engines) and bench
    --profile work, and optimize exits 2 naming the extra to install."""
    (tmp_path / "without_extras.py").write_text(BLOCKER)
    done = subprocess.run([sys.executable, "-c", "import without_extras\n" + CORE_RUN, str(int8_cnn),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0, 0, 0, 0, 2], "loaded": []}, done.stderr
    assert re.search(r"this needs (scipy|sklearn), which the core install leaves out: pip install "
                     r"'tinydeploy\[optimize\]'", done.stderr)
    assert (tmp_path / "out" / "bench" / "bench.html").read_text().count("<svg") == 1


@pytest.mark.slow
def test_the_core_wheel_in_a_bare_venv_renders_emulates_and_benches(int8_cnn, tmp_path, rv32_tools):
    """pip install of the core wheel alone (its dependencies from the package index) into a new
    venv: no training stack comes with it, and render, build, emulate and bench work."""
    import os
    import venv
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(root)], check=True, timeout=300)
    venv.create(tmp_path / "core", with_pip=True)
    python, tool = tmp_path / "core" / "bin" / "python", tmp_path / "core" / "bin" / "tinydeploy"
    subprocess.run([python, "-m", "pip", "install", "-q", next((tmp_path / "dist").glob("tinydeploy-*.whl"))],
                   check=True, timeout=900)
    installed = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                               check=True).stdout
    names = {p["name"].lower().replace("_", "-") for p in json.loads(installed)}
    assert {"tflite-micro", "platformio", "pyserial", "esptool", "jinja2", "rich"} <= names
    assert not names & {"tensorflow-cpu", "tensorflow", "tf-keras", "scikit-learn", "optuna", "matplotlib"}
    env = {**os.environ, "PATH": f"{tmp_path / 'core' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([tool, "render", str(int8_cnn), "--board", "qemu-riscv32", "--out", str(tmp_path / "fw")],
                   check=True, env=env, capture_output=True, timeout=300)
    subprocess.run([tool, "build", str(tmp_path / "fw")], check=True, env=env, capture_output=True, timeout=300)
    emulator = subprocess.Popen([tool, "emulate", str(tmp_path / "fw"), "--port-file", str(tmp_path / "port")],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time
        for _ in range(120):
            if (tmp_path / "port").is_file() and (tmp_path / "port").read_text().strip():
                break
            time.sleep(0.25)
        done = subprocess.run([tool, "bench", "--port", (tmp_path / "port").read_text().strip(), "--runs", "3",
                               "--expect-model", str(int8_cnn), "--profile", "--out", str(tmp_path / "bench"),
                               "--json"], env=env, capture_output=True, text=True, timeout=300)
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["complete"] and results["device"]["engine"] == "c" and results["profile"]["layers"]
    needs = subprocess.run([tool, "optimize", "--data", "digits", "--out", str(tmp_path / "o")], env=env,
                           capture_output=True, text=True, timeout=300)
    assert needs.returncode == 2 and "pip install 'tinydeploy[optimize]'" in needs.stderr
