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


# The shared main (td_main.c) with a fake platform and a fake engine: stdin is the serial
# port, and a '|' stands for "no byte waiting", where an Arduino loop() returns.
MAIN_HOST = r"""
#include <stdio.h>
#include "td_hal.h"
#include "td_runner.h"

const char kInfoFormat[] = "{\"arena_used_bytes\":%s,\"setup_error\":%s}";
const char kDeviceName[] = "host";
const char kModelName[] = "fake";
static int8_t input[2];
static int8_t output[2];
static const char *failure; /* the setup error, from argv */
static uint64_t clock_ticks = 100;

static int invoke(void *ctx) {
  (void)ctx;
  output[0] = (int8_t)(input[0] + 1);
  output[1] = (int8_t)(input[1] + 1);
  return 0;
}

static size_t info(void *ctx, char *buf, size_t size) {
  (void)ctx;
  return (size_t)snprintf(buf, size, kInfoFormat, failure ? "null" : "64", failure ? "\"broken\"" : "null");
}

const char *td_runner_setup(td_platform *platform, td_model_io *io) {
  platform->invoke = invoke;
  platform->info = info;
  platform->profile = NULL;
  io->input_size = sizeof(input);
  io->output_size = sizeof(output);
  if (failure != NULL) return failure;
  io->input = input;
  io->output = output;
  return NULL;
}

void td_hal_init(void) { printf("[init]"); }
void td_hal_write(const char *data, size_t len) { fwrite(data, 1, len, stdout); }
int td_hal_read(void) {
  int c = getchar();
  return c == '|' || c == EOF ? -1 : c;
}
uint64_t td_hal_ticks(void) { return clock_ticks += 10; }

int main(int argc, char **argv) {
  int loops = 0;
  failure = argc > 1 ? argv[1] : NULL;
  td_main_setup();
  while (!feof(stdin)) {
    td_main_run();
    ++loops;
  }
  printf("[%d loops]", loops);
  return 0;
}
"""


@pytest.fixture(scope="module")
def shared_main(tmp_path_factory):
    need_programs("gcc", packages="gcc")
    folder = tmp_path_factory.mktemp("main")
    (folder / "main_host.c").write_text(MAIN_HOST)
    (folder / "td_board.h").write_text("extern const char kInfoFormat[], kDeviceName[], kModelName[];\n")
    exe = folder / "main_host"
    subprocess.run(["gcc", "-std=c99", "-pedantic", *WARNINGS, f"-I{folder}", f"-I{ROOT / 'firmware'}",
                    str(ROOT / "firmware" / "td_main.c"), str(ROOT / "firmware" / "td_protocol.c"),
                    str(folder / "main_host.c"), "-o", str(exe)], check=True)
    return exe


def test_the_shared_main_boots_and_keeps_a_command_across_loop_returns(shared_main):
    done = subprocess.run([str(shared_main)], input=b"na|me%db lo|ad 2%db 0a|0b%infer 2 1%", capture_output=True,
                          timeout=10, check=True)
    init, rest = done.stdout.decode().split("]", 1)
    assert init == "[init"  # the platform starts before anything is printed
    lines = rest.split("\r\n")
    assert lines[:4] == ["m-init-done", "m-ready", "m-name-dut-[host]", "m-ready"]
    assert "m-load-done" in lines and "m-results-[11,12]" in lines
    start, end = (int(line[len("m-lap-us-"):]) for line in lines if line.startswith("m-lap-us-"))
    assert end - start == 10  # the platform's clock: one reading each side of the runs
    assert lines[-1] == "[4 loops]"  # td_main_run returned at each of the three "|" and at the end


def test_the_shared_main_reports_the_engines_setup_error_at_boot(shared_main):
    done = subprocess.run([str(shared_main), "arena too small"], input=b"infer 1%info%", capture_output=True,
                          timeout=10, check=True)
    lines = done.stdout.decode().split("]", 1)[1].split("\r\n")
    assert lines[:3] == ["e-[arena too small]", "m-init-done", "m-ready"]
    assert lines[3] == "e-[the model is not set up (see the error printed at boot)]"
    assert lines[5] == 'm-info-{"arena_used_bytes":null,"setup_error":"broken"}'


@pytest.mark.unit
def test_the_setup_error_room_matches_the_firmware_header():
    import re
    from tinydeploy.codegen.engines import SETUP_ERROR_BYTES
    header = (ROOT / "firmware" / "td_runner.h").read_text()
    assert re.findall(r"#define TD_SETUP_ERROR_BYTES (\d+)", header) == [str(SETUP_ERROR_BYTES)]
