"""The portable firmware core, compiled with the host compiler and driven like a serial port."""

import subprocess
from pathlib import Path

import pytest
from tests.helpers import need_programs

pytestmark = pytest.mark.host

ROOT = Path(__file__).resolve().parents[1]
WARNINGS = ["-Wall", "-Wextra", "-Werror"]


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    need_programs("gcc", packages="gcc")
    exe = tmp_path_factory.mktemp("fw") / "protocol_host"
    subprocess.run(["gcc", "-std=c99", "-pedantic", *WARNINGS, f"-I{ROOT / 'firmware'}",
                    str(ROOT / "firmware" / "td_protocol.c"), str(ROOT / "tests" / "protocol_host.c"),
                    "-o", str(exe)], check=True)
    return exe


def talk(exe, script: str, *args) -> list[str]:
    done = subprocess.run([str(exe), *args], input=script.encode(), capture_output=True, timeout=10, check=True)
    text = done.stdout.decode()
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")  # every line ends in \r\n
    return text.split("\r\n")[:-1]


def test_boot_banner_and_identity(device):
    lines = talk(device, "name%profile%info%")
    assert lines[:2] == ["m-init-done", "m-ready"]
    assert lines[2:4] == ["m-name-dut-[host]", "m-ready"]
    assert lines[4:7] == ["m-profile-[tinydeploy]", "m-model-[fake]", "m-ready"]
    assert lines[7:] == ['m-info-{"arena_bytes":2048,"board":"host"}', "m-ready"]


def test_load_infer_results(device):
    lines = talk(device, "db load 4%db 0102%db 03fF%infer 10 2%results%")
    assert lines[2:4] == ["m-[Expecting 4 bytes]", "m-ready"]
    assert lines[4:7] == ["m-ready", "m-load-done", "m-ready"]  # first half, then the rest
    infer = lines[7:15]
    assert infer[:4] == ["m-warmup-start-2", "m-warmup-done", "m-infer-start-10", "m-lap-us-1014"]
    assert infer[4:] == ["m-lap-us-1084", "m-infer-done", "m-results-[5,6,7]", "m-ready"]
    assert lines[15:] == ["m-results-[5,6,7]", "m-ready"]  # 1+2+3+(-1) = 5, outputs 5,6,7


@pytest.mark.parametrize("script, error", [
    ("bogus 1 2%", "e-[unknown command 'bogus']"),
    ("x" * 81 + "%", "e-[command longer than 80 characters]"),
    ("db load 5%", "e-[db load 5: the model input is 4 bytes]"),
    ("db load%", "e-[db load needs a byte count: db load N%]"),
    ("db 0102%", "e-[db data before db load N]"),
    ("db load 4%db 01020%", "e-[db data must be an even number of hex digits]"),
    ("db load 4%db zz%", "e-[db data must be hex digits]"),
    ("db load 4%db 0102030405%", "e-[db data exceeds the 4 bytes announced]"),
    ("infer 3 1%", "e-[no input loaded: send db load N% and the data first]"),
    ("db load 4%db 01%infer 3%", "e-[no input loaded: send db load N% and the data first]"),
    ("db load 4%db 01020304%infer 0%", "e-[infer needs a count of at least 1]"),
    ("db load 4%db 01020304%infer x%", "e-[usage: infer N W% (N runs after W warm-up runs)]"),
])
def test_bad_commands_get_an_error_and_the_device_keeps_running(device, script, error):
    lines = talk(device, script + "name%")
    assert error in lines
    assert lines[lines.index(error) + 1] == "m-ready"
    assert lines[-2:] == ["m-name-dut-[host]", "m-ready"]


def test_a_failed_setup_is_reported_and_model_commands_refused(device):
    lines = talk(device, "db load 4%name%", "--not-ready")
    assert lines[0] == "e-[arena allocation failed: requested 2048 bytes]"
    assert "e-[the model is not set up (see the error printed at boot)]" in lines
    assert lines[-2:] == ["m-name-dut-[host]", "m-ready"]
