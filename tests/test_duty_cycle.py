"""The duty-cycled firmware (render --duty-cycle-hz): what is rendered and why (the sleep mode of
least estimated power, the board's marker pin), what is refused, and the firmware itself:
td_duty.c on a recording platform (portable C99, warnings as errors), and a rendered C-engine
ESP-IDF project built with hal_espidf.c against the host shim (bench/host_shim), its marker and
sleeps recorded, light sleep and deep sleep (a boot per period)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinydeploy.cli import main
from tinydeploy.codegen import duty_cycle
from tinydeploy.codegen.engines import engine_for
from tinydeploy.codegen.render import RenderOptions, render
from tinydeploy.core.boards import BadInput, get_board, override_power, parse_power
from tinydeploy.core.bounds import BOUNDS
from tinydeploy.core.model import load_model
from tinydeploy.costs import energy
from tinydeploy.runtime import tflm
from tinydeploy.toolchain.project import create_project
from tests.helpers import missing, need_programs

ROOT = Path(__file__).resolve().parents[1]
WARNINGS = ["-Wall", "-Wextra", "-Werror"]
S3, C3 = "esp32-s3-devkitc-1", "esp32-c3-devkitm-1"


def _rendered(model_path, board_name, **options):
    model = load_model(model_path)
    return render(model, get_board(board_name), tflm.measure_arena(model), RenderOptions(**options))


def _defines(header: str) -> dict[str, str]:
    return {parts[1]: parts[2] for line in header.splitlines() if (parts := line.split(maxsplit=2))[:1] == ["#define"]
            and len(parts) == 3}


@pytest.mark.unit
def test_the_sleep_choices_are_the_energy_models_modes():
    assert BOUNDS["--sleep"].choices == tuple(energy.SLEEP_MODES) == tuple(duty_cycle.SLEEP_MACROS)


@pytest.mark.host
@pytest.mark.parametrize("board_name, rate_hz", [(S3, 0.5), ("esp32dev", 0.01), (C3, 100.0)])
def test_the_default_sleep_mode_is_the_one_of_least_estimated_power(int8_cnn, board_name, rate_hz):
    board = get_board(board_name)
    files = _rendered(int8_cnn, board_name, duty_cycle_hz=rate_hz)
    latency = engine_for(board).cost(load_model(int8_cnn), board, fitted=get_board("qemu-riscv32")).latency_ms
    duty = energy.average_power(board, latency, rate_hz)
    best = duty.best
    assert best is not None
    defines = _defines(files[duty_cycle.CONFIG])
    assert defines["TD_DUTY_SLEEP"] == duty_cycle.SLEEP_MACROS[best] and defines["TD_DUTY_SLEEP_NAME"] == f'"{best}"'
    assert defines["TD_DUTY_PERIOD_US"] == f"{round(1e6 / rate_hz)}ULL"
    assert defines["TD_MARKER_GPIO"] == str(board.power.marker_gpio) == "4"
    others = [m for m in duty.modes if m.possible and m.mode != best]
    assert all(m.average_mw > duty.mode(best).average_mw for m in others)
    # the duty main replaces the protocol main; the rest of the project is the benchmark one's
    assert "src/td_duty.c" in files and "src/td_main.c" not in files
    assert '"td_duty.c"' in files["src/CMakeLists.txt"] and '"td_main.c"' not in files["src/CMakeLists.txt"]
    assert files["src/td_duty.c"].split("*/\n", 1)[1] == (ROOT / "firmware/td_duty.c").read_text()
    plain = _rendered(int8_cnn, board_name)
    assert "src/td_main.c" in plain and "src/td_duty.c" not in plain and duty_cycle.CONFIG not in plain


@pytest.mark.host
def test_the_modes_across_rates_and_an_asked_mode(int8_cnn):
    """On the S3 (0.23 ms): deep sleep at a slow rate, light sleep in between, awake idle when
    the period is too short to wake from light sleep; --sleep overrides the choice."""
    chosen = {rate: _defines(_rendered(int8_cnn, S3, duty_cycle_hz=rate)[duty_cycle.CONFIG])["TD_DUTY_SLEEP_NAME"]
              for rate in (0.01, 1.0, 1000.0)}
    assert chosen == {0.01: '"deep"', 1.0: '"light"', 1000.0: '"awake"'}
    asked = _defines(_rendered(int8_cnn, S3, duty_cycle_hz=1.0, sleep="deep")[duty_cycle.CONFIG])
    assert asked["TD_DUTY_SLEEP"] == "TD_SLEEP_DEEP"


@pytest.mark.host
def test_render_reports_the_duty_cycle_and_refuses_what_cannot_run(int8_cnn, tmp_path, capsys):
    assert main(["render", str(int8_cnn), "--board", C3, "--engine", "c", "--duty-cycle-hz", "2", "--out",
                 str(tmp_path / "c3"), "--json"]) == 0
    import json
    summary = json.loads(capsys.readouterr().out)
    assert summary["duty_cycle"]["sleep"] == "light" and summary["duty_cycle"]["chosen_by"] == "estimate"
    assert summary["duty_cycle"]["period_us"] == 500_000 and summary["duty_cycle"]["basis"] == "estimate"
    assert (tmp_path / "c3" / "src" / "td_duty.c").exists() and not (tmp_path / "c3" / "src" / "td_main.c").exists()
    refused = [
        (["--board", "qemu-riscv32", "--duty-cycle-hz", "1"], "estimate unavailable: board qemu-riscv32 has no "
                                                               "power profile"),
        (["--board", S3, "--sleep", "deep"], "--sleep deep: the sleep mode of a duty cycle; give its rate"),
        (["--board", S3, "--duty-cycle-hz", "20", "--sleep", "deep"], "deep sleep impossible at 20 Hz"),
        (["--board", S3, "--duty-cycle-hz", "1e5"], "no sleep mode keeps it on esp32-s3-devkitc-1"),
        (["--board", S3, "--duty-cycle-hz", "0"], "--duty-cycle-hz: 0 is out of range"),
        (["--board", S3, "--duty-cycle-hz", "1", "--sleep", "hibernate"], "invalid choice: 'hibernate'"),
    ]
    for n, (args, message) in enumerate(refused):
        out = tmp_path / f"bad{n}"
        assert main(["render", str(int8_cnn), *args, "--out", str(out)]) == 2, args
        assert message in capsys.readouterr().err, args
        assert not out.exists()


@pytest.mark.unit
def test_the_marker_pin_is_board_data_checked_and_kept_through_overrides():
    board = get_board(S3)
    assert board.power.marker_gpio == 4 and board.power.to_dict()["marker_gpio"] == 4
    assert override_power(board, {"active_ma": 40.0}).power.marker_gpio == 4
    table = {k: v for k, v in board.power.to_dict().items() if k not in ("overridden", "marker_gpio")}
    assert parse_power(table, "x.toml").marker_gpio is None  # optional: no marker
    for bad in (-1, 64, 4.0, "4", True):
        with pytest.raises(BadInput, match=r"'power.marker_gpio' is .*; accepted: a GPIO number, 0-63"):
            parse_power({**table, "marker_gpio": bad}, "x.toml")


# td_duty.c on a platform that records: the fake clock moves 10 µs a reading, sleeping moves it
# by the time slept; the engine adds one to each input byte; deep sleep "boots" again.
DUTY_HOST = r"""
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include "td_hal.h"
#include "td_runner.h"

const char kInfoFormat[] = "{}";
const char kDeviceName[] = "host";
const char kModelName[] = "fake";
static int8_t input[3];
static int8_t output[3];
static uint64_t clock_us = 1000;
static int sleeps_left;
static jmp_buf boot;

static int invoke(void *ctx) {
  int i;
  (void)ctx;
  clock_us += 300; /* the inference takes 300 us */
  for (i = 0; i < 3; ++i) output[i] = (int8_t)(input[i] + 1);
  return 0;
}

const char *td_runner_setup(td_platform *platform, td_model_io *io) {
  platform->invoke = invoke;
  io->input = input;
  io->input_size = sizeof(input);
  io->output = output;
  io->output_size = sizeof(output);
  return getenv("FAIL_SETUP");
}

/* a sensor: the middle class wins */
void td_duty_input(int8_t *in, size_t size) {
  if (size == 3) in[0] = 1, in[1] = 7, in[2] = 2;
}

void td_hal_init(void) { printf("[init]"); }
void td_hal_write(const char *data, size_t len) { fwrite(data, 1, len, stdout); }
int td_hal_read(void) { return -1; }
uint64_t td_hal_ticks(void) { return clock_us += 10; }
void td_hal_marker_setup(int gpio) { printf("[marker on %d]", gpio); }
void td_hal_marker(int level) { printf("[marker %d at %llu]", level, (unsigned long long)clock_us); }
void td_hal_sleep_us(uint64_t us, int mode) {
  printf("[sleep %d %llu]", mode, (unsigned long long)us);
  clock_us += us;
  if (--sleeps_left == 0) exit(0);
  if (mode == TD_SLEEP_DEEP) longjmp(boot, 1);
}

int main(int argc, char **argv) {
  sleeps_left = argc > 1 ? atoi(argv[1]) : 3;
  setjmp(boot);
  td_main();
  return 1;
}
"""


def _duty_config(period_us: int, sleep: str, marker: int) -> str:
    return (f"#define TD_DUTY_PERIOD_US {period_us}ULL\n#define TD_DUTY_SLEEP {duty_cycle.SLEEP_MACROS[sleep]}\n"
            f'#define TD_DUTY_SLEEP_NAME "{sleep}"\n#define TD_MARKER_GPIO {marker}\n')


@pytest.fixture(scope="module")
def duty_host(tmp_path_factory):
    """td_duty.c compiled with the recording platform, C99, -pedantic and warnings as errors."""
    need_programs("gcc", packages="gcc")
    folder = tmp_path_factory.mktemp("duty")
    (folder / "duty_host.c").write_text(DUTY_HOST)
    (folder / "td_board.h").write_text("extern const char kInfoFormat[], kDeviceName[], kModelName[];\n")

    def build(sleep: str) -> Path:
        (folder / sleep).mkdir()
        (folder / sleep / "td_duty_config.h").write_text(_duty_config(5000, sleep, 7))
        exe = folder / sleep / "duty_host"
        subprocess.run(["gcc", "-std=c99", "-pedantic", *WARNINGS, f"-I{folder / sleep}", f"-I{folder}",
                        f"-I{ROOT / 'firmware'}", str(ROOT / "firmware" / "td_duty.c"), str(folder / "duty_host.c"),
                        "-o", str(exe)], check=True)
        return exe

    return {sleep: build(sleep) for sleep in ("light", "deep")}


@pytest.mark.host
def test_each_period_marks_the_inference_and_sleeps_the_rest_of_it(duty_host):
    done = subprocess.run([str(duty_host["light"]), "3"], capture_output=True, timeout=10)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert out.startswith("[init][marker on 7]m-duty-period-us-5000-sleep-light\r\n")
    import re
    marks = [(int(level), int(at)) for level, at in re.findall(r"\[marker (\d) at (\d+)\]", out)]
    sleeps = [(int(mode), int(us)) for mode, us in re.findall(r"\[sleep (\d) (\d+)\]", out)]
    assert [level for level, _ in marks] == [1, 0] * 3 and [mode for mode, _ in sleeps] == [1] * 3
    assert all(end - start >= 300 for (_, start), (_, end) in zip(marks[::2], marks[1::2]))  # the inference inside
    assert re.findall(r"m-duty-(\d+)-class-(\d+)-us-(\d+)", out) == [("1", "1", "310"), ("2", "1", "310"),
                                                                      ("3", "1", "310")]
    # start to start, one period: the first at setup's reading, each sleep the period's remainder
    starts = [at for level, at in marks if level == 1]
    assert [b - a for a, b in zip(starts, starts[1:])] == [5000, 5000]
    assert all(0 < us < 5000 for _, us in sleeps)


@pytest.mark.host
def test_deep_sleep_boots_again_and_a_failed_setup_only_sleeps(duty_host):
    out = subprocess.run([str(duty_host["deep"]), "3"], capture_output=True, timeout=10).stdout.decode()
    assert out.count("[init]") == 3 and out.count("m-duty-1-class-1") == 1 and "m-duty-3-" in out
    assert out.count("[sleep 2 ") == 3
    failed = subprocess.run([str(duty_host["light"]), "2"], capture_output=True, timeout=10,
                            env={**os.environ, "FAIL_SETUP": "arena too small"}).stdout.decode()
    assert "e-[arena too small]\r\n" in failed and "[marker 1" not in failed and failed.count("[sleep 1 ") == 2


def _host_check():
    spec = importlib.util.spec_from_file_location("firmware_host_check", ROOT / "bench/firmware_host_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.host
@pytest.mark.parametrize("rate_hz, sleep, sleeps", [(20.0, "light", 4), (5.0, "deep", 3)])
def test_the_esp_idf_duty_firmware_built_on_the_host_shim(int8_cnn, tmp_path, rate_hz, sleep, sleeps):
    """The rendered C-engine ESP-IDF project, hal_espidf.c included, compiled 32-bit with warnings
    as errors against bench/host_shim: the marker GPIO is set up and raised around each inference,
    the sleeps fill each period, and in deep sleep the firmware boots again for each."""
    need_programs("gcc", packages="gcc-multilib")
    if subprocess.run(["gcc", "-m32", "-x", "c", "-", "-o", "/dev/null"], input=b"int main(void){return 0;}",
                      capture_output=True).returncode:
        missing("needs a 32-bit host compiler (Debian: apt-get install gcc-multilib)")
    create_project(int8_cnn, get_board(C3), tmp_path / "fw", RenderOptions(engine="c", duty_cycle_hz=rate_hz,
                                                                           sleep=sleep))
    binary, _ = _host_check().build(tmp_path / "fw", None, None, None, tmp_path / "work")
    record = tmp_path / "record.txt"
    done = subprocess.run([str(binary)], stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                          env={**os.environ, "TD_SHIM_RECORD": str(record), "TD_SHIM_SLEEPS": str(sleeps)})
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    events = [line.split() for line in record.read_text().splitlines()]
    names = [name for _, name, _ in events]
    lines = done.stdout.decode().split("\r\n")
    period_us = round(1e6 / rate_hz)
    assert lines[0] == f"m-duty-period-us-{period_us}-sleep-{sleep}"
    results = [line for line in lines if line.startswith("m-duty-") and "-class-" in line]
    assert len(results) == sleeps + 1 and all(int(r.split("-us-")[1]) > 0 for r in results)
    assert all(pin == "4" for _, name, pin in events if name.startswith(("marker", "gpio")))
    slept = [int(value) for _, name, value in events if name == f"{sleep}_sleep_us"]
    assert len(slept) == sleeps and all(0 < us < period_us for us in slept)
    assert names.count("boot") == (sleeps + 1 if sleep == "deep" else 1) and names[-1] == "end"
    # the marker: low once set up (at each boot), then high and low around each inference
    marks = [(int(t), name) for i, (t, name, _) in enumerate(events)
             if name.startswith("marker_") and events[i - 1][1] != "gpio_output"]
    assert [name for _, name in marks] == ["marker_high", "marker_low"] * (sleeps + 1)
    assert all(low >= high for (high, _), (low, _) in zip(marks[::2], marks[1::2]))
    if sleep == "light":  # start to start, the period (the host's sleeps overshoot a little)
        highs = [t for t, name in marks if name == "marker_high"]
        assert all(abs(b - a - period_us) < period_us * 0.2 for a, b in zip(highs, highs[1:]))
