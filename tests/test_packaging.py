import json
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
    # The C engine: its templates, kernels and the emulated board's start code and linker script.
    assert {"tinydeploy/templates/cengine/td_model.c.j2", "tinydeploy/templates/make/Makefile.j2",
            "tinydeploy/firmware/td_kernels.c", "tinydeploy/firmware/start_rv32.S",
            "tinydeploy/firmware/qemu_virt.ld", "tinydeploy/board_profiles/qemu-riscv32.toml"} <= set(names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = ("import json, sys; sys.path.insert(0, sys.argv[1]); import tinydeploy, tinydeploy.boards as b; "
             "from tinydeploy.resources import shipped; "
             "print(json.dumps([tinydeploy.__file__, sorted(b.load_boards()), "
             "(shipped('templates') / 'common' / 'platformio.ini.j2').is_file(), "
             "(shipped('firmware') / 'td_protocol.h').is_file()]))")
    out = subprocess.run([sys.executable, "-c", probe, str(target)], cwd=elsewhere, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    module_file, boards, has_template, has_firmware = json.loads(out)
    assert module_file.startswith(str(target))
    assert has_template and has_firmware
    assert {"esp32dev", "esp32-s3-devkitc-1", "esp32-c3-devkitm-1"} <= set(boards)
