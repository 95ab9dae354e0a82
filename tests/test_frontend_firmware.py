"""A model with a front end, on the device: render puts the front end into the firmware of
both engines, the shared main runs it on the received int16 window, and the model input it
makes is front.quantized(window), byte for byte, on every test window; the outputs are the
host reference's. Also: the virtual device and the emulated board take such models, and the
front end's share of arena, flash and latency is the one frontend_cost gives."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.codegen.render import RenderOptions, render
from tinydeploy.core.boards import get_board
from tinydeploy.core.frontend import Frontend, Normalize, Spectrum, input_scale_for, quantize_input
from tinydeploy.core.model import load_model, parse_model, with_metadata
from tinydeploy.core.model_frontend import device_frontend
from tinydeploy.costs import figures
from tinydeploy.costs.frontend import frontend_cost
from tinydeploy.device.connection import load_commands
from tests.helpers import need_programs

ROOT = Path(__file__).resolve().parents[1]
STEPS, CHANNELS, CLASSES = 128, 2, 3
FRONT = Frontend((Normalize(log_scale=True), Spectrum(frame_length=32, hop=16, bands=8)))
BAUD = 921600  # the host firmware's line: fast, so that a window a command takes little time


def windows(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two channels of a tone whose frequency gives the class, noise, and a random gain."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, count)
    t = np.arange(STEPS)
    x = np.empty((count, STEPS, CHANNELS))
    for i, label in enumerate(y):
        cycles = (2, 6, 12)[label] + rng.uniform(-0.5, 0.5)
        for c in range(CHANNELS):
            x[i, :, c] = np.sin(2 * np.pi * cycles * t / STEPS + rng.uniform(0, 6.3)) + 0.3 * rng.normal(size=STEPS)
        x[i] *= rng.uniform(0.2, 3.0)
    x[0, 5:9, 0] = 1e6  # a window that clips, and one with a constant channel
    x[1, :, 1] = 0.25
    return x, y


@pytest.fixture(scope="module")
def fronted(tmp_path_factory):
    """A small Conv1D network trained a few epochs on the front end's features, converted to
    int8, with the front end and window in its metadata: (model path, test windows, labels)."""
    from tinydeploy.runtime import _tf
    from tinydeploy.optimize.convert import to_int8_tflite
    x, y = windows(96, 0)
    front = Frontend(FRONT.blocks, input_scale=input_scale_for(x))
    features = front.features(x)
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    layers = keras.layers
    net = keras.Sequential([layers.Input(features.shape[1:]), layers.Conv1D(8, 3, activation="relu"),
                            layers.GlobalAveragePooling1D(), layers.Dense(CLASSES, activation="softmax")])
    net.compile("adam", "sparse_categorical_crossentropy")
    net.fit(features, y, epochs=3, verbose=0)
    tflite = to_int8_tflite(net, features)
    tflite = with_metadata(tflite, {"frontend": front.to_dict(), "window": [STEPS, CHANNELS],
                                    "labels": [str(i) for i in range(CLASSES)]})
    path = tmp_path_factory.mktemp("fronted") / "fronted.tflite"
    path.write_bytes(tflite)
    # the Arduino library's CMSIS-NN dense kernel takes one scale per tensor (framework.model_problems)
    per_tensor = to_int8_tflite(net, features, per_tensor_dense=True)
    path.with_name("fronted-per-tensor.tflite").write_bytes(with_metadata(per_tensor, {
        "frontend": front.to_dict(), "window": [STEPS, CHANNELS], "labels": [str(i) for i in range(CLASSES)]}))
    test_x, test_y = windows(24, 1)
    return path, test_x, test_y


def script(wire: list[bytes]) -> bytes:
    """The protocol commands that load each raw window and run one inference on it. The ESP-IDF
    platform layer opens its UART at 115200 baud and then switches to the project's rate: bytes
    the stand-in UART receives in between read as garbage, so a preamble of line breaks ending in
    '%' (one command at most, answered and forgotten) goes first."""
    commands = "".join(f"{c}%" for data in wire for c in [*load_commands(data), "infer 1 0"])
    return ("\n" * 200 + "%" + commands).encode()


def results(stdout: str) -> np.ndarray:
    return np.array([[int(v) for v in m.split(",")] for m in re.findall(r"m-results-\[([-0-9,]*)\]", stdout)])


# A probe linked in place of the engine's td_runner_setup (whose own is renamed): it keeps the
# engine's input buffer as the engine set it up, and writes it to TD_PROBE_INPUTS at every
# inference, so the test reads the model input the front end made.
PROBE = r"""
#include <stdio.h>
#include <stdlib.h>
#include "td_runner.h"

const char *td_runner_setup_real(td_platform *platform, td_model_io *io);
static int (*engine_invoke)(void *);
static const int8_t *model_input;
static size_t model_input_size;
static FILE *dump;

static int probed_invoke(void *ctx) {
  fwrite(model_input, 1, model_input_size, dump);
  fflush(dump);
  return engine_invoke(ctx);
}

const char *td_runner_setup(td_platform *platform, td_model_io *io) {
  const char *error = td_runner_setup_real(platform, io);
  if (error == NULL) {
    dump = fopen(getenv("TD_PROBE_INPUTS"), "wb");
    model_input = io->input;
    model_input_size = io->input_size;
    engine_invoke = platform->invoke;
    platform->invoke = probed_invoke;
  }
  return error;
}
"""


def host_check_module():
    """bench/firmware_host_check.py: its builder and TFLM library (a script, not a package)."""
    if "firmware_host_check" not in sys.modules:
        spec = importlib.util.spec_from_file_location("firmware_host_check", ROOT / "bench/firmware_host_check.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["firmware_host_check"]


# The TFLM kernel files of this test's operators: TFLM's reference kernels, only those the model's
# resolver registers (the linker would drop the others), so the test compiles a quarter of TFLM.
KERNEL_FILES = {"CONV_2D": "conv", "FULLY_CONNECTED": "fully_connected", "MEAN": "reduce", "RESHAPE": "reshape",
                "SOFTMAX": "softmax"}


def tflm_for(model, tflm: Path, cache: Path):
    """TFLM (esp-tflite-micro's tree, reference kernels) for the host, as
    firmware_host_check.tflm_library builds it, with the model's kernels only."""
    check = host_check_module()
    builder = check.Builder(cache / "objects", 64)
    stems = {KERNEL_FILES[op.name] for op in model.all_operators} | {"kernel_util"}
    kernels = tflm / "tensorflow/lite/micro/kernels"
    sources = [p for p in check._tflm_tree_sources(tflm, "reference")
               if "signal" not in p.parts and (p.parent != kernels or p.stem.removesuffix("_common") in stems)]
    includes = check._tflm_tree_includes(tflm)
    platform = [f"-I{check.SHIM / 'espidf'}", f"-DTD_LINE_BAUD={BAUD}", f"-I{check.SHIM}"]
    objects = builder.compile([check.SHIM / "host_uart.c", check.SHIM / "sleep_shim.c"],
                              [*check.STRICT, "-O2", *platform])
    objects += builder.compile(sources, [*check.TFLM_FLAGS, *platform, *(f"-isystem{p}" for p in includes)])
    objects += builder.compile([check.SHIM / "espidf/espidf_shim.c"], [*check.STRICT, "-O2", *platform])
    return check.Library(objects, platform, includes, "reference")


def build_on_host(project: Path, work: Path, library=None) -> Path:
    """The project's sources (ESP-IDF, either engine) built on this computer against the ESP-IDF
    stand-ins of bench/host_shim, with the probe around the engine's runner; TFLM's objects
    come from library (firmware_host_check.tflm_library)."""
    check = host_check_module()
    src = project / "src"
    (work / "probe.c").write_text(PROBE)
    builder = check.Builder(work / "objects", 64)
    shim = [f"-DTD_LINE_BAUD={BAUD}", f"-I{check.SHIM}", f"-I{check.SHIM / 'espidf'}"]
    strict = ["-Wall", "-Wextra", "-Werror", "-O2"]
    rename = "-Dtd_runner_setup=td_runner_setup_real"
    runners = [p for p in src.iterdir() if p.name in ("td_c_runner.c", "td_tflm_runner.cc")]
    others = sorted(p for p in src.iterdir() if p.suffix in (".c", ".cc") and p not in runners)
    if library is None:
        objects = builder.compile([check.SHIM / "host_uart.c", check.SHIM / "sleep_shim.c",
                                   check.SHIM / "espidf/espidf_shim.c"], [*strict, *shim])
        flags = [*strict, "-std=c99", *shim, f"-I{src}", f"-DTD_BAUD={BAUD}"]
    else:
        objects = list(library.objects)
        flags = [*strict, *library.platform, f"-I{src}", f"-DTD_BAUD={BAUD}",
                 *(f"-isystem{p}" for p in library.includes), "-DTF_LITE_STATIC_MEMORY"]
    objects += builder.compile(others, flags) + builder.compile(runners, [*flags, rename])
    objects += builder.compile([work / "probe.c"], [*strict, f"-I{src}"])
    return builder.link(objects, work / "firmware", cxx=library is not None)


def run_on_host(binary: Path, model_path: Path, x: np.ndarray, work: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Every window through the host firmware: (the model inputs it made, its outputs, stdout)."""
    front = device_frontend(load_model(model_path))
    dump = work / "inputs.bin"
    done = subprocess.run([str(binary)], input=script(front.wire(x)), capture_output=True, timeout=300,
                          # flow control: every byte arrives however late a loaded machine runs the firmware
                          env={**os.environ, "TD_PROBE_INPUTS": str(dump), "TD_HOST_UART_FLOW": "1"})
    stdout = done.stdout.decode(errors="replace")
    inputs = np.frombuffer(dump.read_bytes(), np.int8).reshape(-1, int(np.prod(front.front.output_shape(front.window))))
    return inputs, results(stdout), stdout


def assert_front_end_on_device(model_path: Path, x: np.ndarray, inputs: np.ndarray, outputs: np.ndarray,
                               reference) -> None:
    model = load_model(model_path)
    front = device_frontend(model)
    expected = front.front.quantized(x).reshape(len(x), -1)
    assert inputs.shape == expected.shape and outputs.shape == (len(x), CLASSES)
    for i in range(len(x)):  # every window, byte for byte
        assert inputs[i].tobytes() == expected[i].tobytes(), f"window {i}: the device's model input differs"
    host = reference(model, expected.reshape(len(x), *model.input_tensors[0].shape[1:]))
    np.testing.assert_array_equal(outputs, host)


# ---- the C engine: rendered, built on this computer, driven over its serial protocol ----

@pytest.mark.host
def test_c_engine_firmware_runs_the_front_end_bit_exactly(fronted, tmp_path):
    need_programs("gcc", packages="gcc")
    from tinydeploy.codegen.engines import ENGINES
    from tinydeploy.toolchain.project import write_project
    model_path, x, _ = fronted
    model = load_model(model_path)
    files = render(model, get_board("esp32-s3-devkitc-1"), None, RenderOptions(engine="c"))
    assert {"src/td_frontend.c", "src/td_frontend_config.c", "src/td_frontend_runner.c"} <= set(files)
    assert "#define TD_FRONTEND 1" in files["src/td_board.h"]
    assert '"td_frontend_runner.c"' in files["src/CMakeLists.txt"]
    write_project(files, tmp_path / "fw")
    binary = build_on_host(tmp_path / "fw", tmp_path)
    inputs, outputs, stdout = run_on_host(binary, model_path, x, tmp_path)
    assert len(outputs) == len(x), stdout[-2000:]
    assert_front_end_on_device(model_path, x, inputs, outputs, ENGINES["c"].reference)


@pytest.mark.host
def test_tflm_firmware_runs_the_front_end_bit_exactly(fronted, tmp_path):
    """The TFLM firmware (esp-tflite-micro with TFLM's reference kernels) on the same windows."""
    need_programs("gcc", "g++", packages="gcc g++")
    tflm_src = os.environ.get("TINYDEPLOY_TFLM_SRC")
    if not tflm_src:
        pytest.skip("TINYDEPLOY_TFLM_SRC is not set: give an espressif/esp-tflite-micro tree to build TFLM firmware")
    from tinydeploy.codegen.engines import ENGINES
    from tinydeploy.toolchain.project import write_project
    model_path, x, _ = fronted
    # A 64-bit host build: TFLM's structs are larger than the board's 32-bit ones, so the arena
    # gets room for them (the arena's sizing is test_firmware_host.py's subject, at -m32).
    files = render(load_model(model_path), get_board("esp32-s3-devkitc-1"), None,
                   RenderOptions(engine="tflm", arena_margin_percent=200))
    assert '"td_frontend_config.c"' in files["src/CMakeLists.txt"]
    write_project(files, tmp_path / "fw")
    cache = Path(os.environ.get("TINYDEPLOY_HOST_CHECK_WORK") or tmp_path)
    library = tflm_for(load_model(model_path), Path(tflm_src), cache)
    binary = build_on_host(tmp_path / "fw", tmp_path, library)
    inputs, outputs, stdout = run_on_host(binary, model_path, x, tmp_path)
    assert len(outputs) == len(x), stdout[-2000:]
    assert_front_end_on_device(model_path, x, inputs, outputs, ENGINES["tflm"].reference)


@pytest.mark.host
def test_arduino_project_carries_the_front_end(fronted):
    """Arduino builds every file of src/: the front end is there, and the main runs it."""
    files = render(load_model(fronted[0].with_name("fronted-per-tensor.tflite")), get_board("esp32-s3-devkitc-1"),
                   None, RenderOptions(engine="tflm", framework="arduino"))
    assert {"src/td_frontend.c", "src/td_frontend_config.c", "src/td_frontend_runner.c",
            "src/td_frontend_runner.h"} <= set(files)
    assert "#define TD_FRONTEND 1" in files["src/td_board.h"]


@pytest.mark.host
def test_a_model_without_front_end_renders_as_before(int8_cnn):
    files = render(load_model(int8_cnn), get_board("esp32-s3-devkitc-1"), None, RenderOptions(engine="c"))
    assert not any("frontend" in path for path in files)
    assert "TD_FRONTEND" not in files["src/td_board.h"] and "td_frontend" not in files["src/CMakeLists.txt"]
    assert '"frontend"' not in files["src/td_board.c"]


# ---- the wire format, the virtual device, the emulated board ----

@pytest.mark.unit
def test_every_int16_sample_quantises_back_to_itself():
    """The virtual device reads int16 samples and runs the float front end on sample x scale:
    for every int16 value and a few scales, that gives the sample back."""
    samples = np.arange(-32768, 32768, dtype=np.int16)
    for scale in (1.0, 3.0517578125e-05, 0.0013, 7.77e3):
        assert np.array_equal(quantize_input(samples.astype(np.float64) * scale, scale), samples)


@pytest.mark.host
def test_virtual_device_bench_validates_a_front_end_model(fronted, tmp_path):
    from tinydeploy.device.bench import bench
    from tinydeploy.device.virtual_device import VirtualDevice
    model_path, x, y = fronted
    with VirtualDevice(model_path) as device:
        result = bench(device.open_tcp(), tmp_path / "bench", runs=3, warmup=1, expect_model=model_path,
                       samples=(x, y), reset=False)
    front = device_frontend(load_model(model_path))
    assert result.info["window"] == [STEPS, CHANNELS]
    assert result.info["frontend_ram_bytes"] == figures.frontend_arena(load_model(model_path))
    assert result.info["frontend_ram_bytes"] == frontend_cost(front.front, front.window).ram_bytes
    validation = result.validation
    assert validation["samples"] == len(x) and validation["identical_outputs"] == 1.0
    assert "front end" in validation["reference"]


@pytest.mark.host
def test_emulated_board_runs_the_front_end_and_validates_bit_exactly(fronted, tmp_path, rv32_tools):
    """The real C-engine firmware on QEMU: render, build, boot, bench and validate the raw windows;
    the instruction count includes the front end (more than the model alone)."""
    from tinydeploy.device import bench, emulate
    from tinydeploy.device.verify import verify
    from tinydeploy.core.targets import Targets
    from tinydeploy.toolchain.build import build
    from tinydeploy.toolchain.project import create_project
    model_path, x, y = fronted
    create_project(model_path, get_board("qemu-riscv32"), tmp_path / "fw")
    build(tmp_path / "fw")
    with emulate.start(tmp_path / "fw") as emulator:
        result = bench.bench(emulator.url, tmp_path / "bench", runs=2, warmup=0, expect_model=model_path,
                             samples=(x, y), reset=False)
    validation = result.validation
    assert validation["samples"] == len(x) and validation["identical_outputs"] == 1.0
    assert validation["max_output_diff_lsb"] == 0
    model = load_model(model_path)
    cost = figures.frontend(model)
    assert result.latency_instructions["median"] > cost.operations  # the front end ran in the timed loop
    verdicts = {v.name: v for v in verify(result.to_dict(), Targets())}
    arena = verdicts["arena"]
    assert "front end" in arena.basis
    assert arena.measured == pytest.approx((result.info["arena_used_bytes"] + cost.ram_bytes) / 1024, abs=0.01)


# ---- costs ----

@pytest.mark.host
def test_figures_grow_by_exactly_the_front_ends_cost(fronted, int8_cnn):
    """The same network with and without its front end: arena, flash and latency differ by
    frontend_cost's RAM, flash and cycles, for both engines; energy follows the latency."""
    from tinydeploy.codegen.engines import ENGINES
    from tinydeploy.runtime import tflm
    model_path = fronted[0]
    fronted_model = load_model(model_path)
    plain = parse_model(with_metadata(fronted_model.data, {}), "plain")
    front = device_frontend(fronted_model)
    cost = frontend_cost(front.front, front.window)
    board = get_board("esp32-s3-devkitc-1")
    measured = tflm.measure_arena(plain)
    for engine in ENGINES.values():
        fitted = get_board("qemu-riscv32")  # the C engine's cycle table stands in on a board not calibrated for it
        with_front = engine.cost(fronted_model, board, measured=measured, fitted=fitted)
        without = engine.cost(plain, board, measured=measured, fitted=fitted)
        assert with_front.arena_bytes - without.arena_bytes == cost.scratch_bytes + cost.input_bytes
        assert with_front.flash_bytes - without.flash_bytes == cost.flash_bytes_estimate + (
            fronted_model.size_bytes - plain.size_bytes if engine.name == "tflm" else 0)
        cycles_ms = cost.cycles_estimate / board.cpu_mhz / 1000
        assert with_front.latency_ms - without.latency_ms == pytest.approx(cycles_ms, abs=2e-4)
        assert with_front.frontend == cost and without.frontend is None
        assert "front end" in with_front.latency_basis and "front end" in with_front.arena_basis
        assert with_front.energy.energy_uj > without.energy.energy_uj


@pytest.mark.host
def test_inspect_shows_the_front_ends_share(fronted):
    from tinydeploy.runtime.inspect import inspect
    report = inspect(fronted[0], get_board("esp32-s3-devkitc-1")).to_dict()
    share = report["frontend"]
    assert share["window"] == [STEPS, CHANNELS] and share["ram_bytes"] > 0 and share["cycles_estimate"] > 0
    arena = next(t for t in report["targets"] if t["target"] == "arena")
    assert "front end" in arena["basis"]
    assert arena["measured"] == pytest.approx((report["board_arena"]["arena_bytes"] + share["ram_bytes"]) / 1024,
                                              abs=0.01)
    done = subprocess.run([sys.executable, "-m", "tinydeploy", "inspect", str(fronted[0]), "--board",
                           "esp32-s3-devkitc-1"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode in (0, 1), done.stderr
    assert "Front end" in done.stdout and f"{share['ram_bytes']:,}" in done.stdout


@pytest.mark.host
def test_render_refuses_a_front_end_that_does_not_fill_the_model_input(fronted, tmp_path):
    from tinydeploy.core.errors import BadInput
    model = load_model(fronted[0])
    meta = dict(model.meta, window=[STEPS // 2, CHANNELS])
    broken = parse_model(with_metadata(model.data, meta), "broken.tflite")
    with pytest.raises(BadInput, match="front end makes .* features .* model's input takes 128"):
        render(broken, get_board("esp32-s3-devkitc-1"), None, RenderOptions(engine="c"))


@pytest.mark.host
def test_render_summary_names_the_front_end(fronted, tmp_path):
    from tinydeploy.toolchain.project import create_project
    summary = create_project(fronted[0], get_board("esp32-s3-devkitc-1"), tmp_path / "fw", RenderOptions(engine="c"))
    cost = figures.frontend(load_model(fronted[0]))
    assert summary["frontend"]["ram_bytes"] == cost.ram_bytes and "front end" in summary["description"]
    assert (tmp_path / "fw/src/td_frontend_config.c").is_file()
