"""Build a rendered tinydeploy project's real firmware on this computer and bench it over a pty.

    python bench/firmware_host_check.py PROJECT --tflm DIR [--esp-nn DIR] [--arduino-lib DIR]
        [--model MODEL.tflite] [--data digits] [--validate N] [--profile] [--bits 32|64] [--work DIR] [--json]

The project's own sources (main, platform layer, model runner, model data, protocol core; for
the C engine its model and kernels) are compiled unchanged, with `-Wall -Wextra -Werror`,
against a TFLite Micro source tree and the small ESP-IDF / Arduino stand-ins in
bench/host_shim/ (our own code). The binary then runs behind a pty, and `tinydeploy bench`
talks to it exactly as to a board: boot, info%, latency, `--validate` and `--profile`.

Kernel libraries, by the board profile's [tflm] table and the project's framework:
- reference: TFLM's reference kernels (esp-tflite-micro's tree without ESP-NN, or the Arduino
  library's own tree);
- esp-nn: esp-tflite-micro's ESP-NN kernels with ESP-NN's generic C path (ESP32, ESP32-C3);
- esp-nn-s3: as esp-nn, but every kernel asks for the scratch ESP-NN's S3 assembly kernels ask
  for (ESP-NN's own S3 size functions, compiled here); the S3 assembly itself cannot run here.

The default is a 32-bit build (gcc -m32, ILP32 like Xtensa and RV32), so the arena the
firmware reports is the board's, not the 64-bit host's. Sources of TFLM, ESP-NN and the
Arduino library are read from the folders given and never copied into this repository.
Objects are cached in --work (default: a folder under the system's temp directory).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pty
import re
import select
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHIM = HERE / "host_shim"
TFLM_FLAGS = ["-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON", "-O2", "-fno-exceptions",
              "-ffunction-sections", "-fdata-sections", "-w"]
STRICT = ["-Wall", "-Wextra", "-Werror"]
# esp-tflite-micro replaces these reference kernels with its ESP-NN ones (its CMakeLists.txt).
ESP_NN_REPLACES = {"add.cc", "conv.cc", "depthwise_conv.cc", "fully_connected.cc", "mul.cc", "pooling.cc",
                   "softmax.cc"}
# ESP-NN's portable sources (its CMakeLists.txt lists them for every target).
ESP_NN_GENERIC = ["activation_functions/esp_nn_relu_ansi.c", "activation_functions/esp_nn_hard_swish_ansi.c",
                  "common/esp_nn_mean_ansi.c", "basic_math/esp_nn_add_ansi.c", "basic_math/esp_nn_mul_ansi.c",
                  "convolution/esp_nn_conv_ansi.c", "convolution/esp_nn_conv_opt.c",
                  "convolution/esp_nn_depthwise_conv_ansi.c", "convolution/esp_nn_depthwise_conv_opt.c",
                  "fully_connected/esp_nn_fully_connected_ansi.c", "softmax/esp_nn_softmax_ansi.c",
                  "softmax/esp_nn_softmax_opt.c", "logistic/esp_nn_logistic_ansi.c",
                  "pooling/esp_nn_avg_pool_ansi.c", "pooling/esp_nn_max_pool_ansi.c"]
# The S3 files that hold ESP-NN's S3 scratch-size functions; the linker drops the rest of them.
ESP_NN_S3_SIZES = ["convolution/esp_nn_conv_esp32s3.c", "convolution/esp_nn_depthwise_conv_s8_esp32s3.c",
                   "softmax/esp_nn_softmax_s8_esp32s3.c"]


class CheckError(Exception):
    pass


def _tflm_tree_sources(root: Path, kernels: str) -> list[Path]:
    """TFLM sources of an esp-tflite-micro tree, as its CMakeLists.txt collects them."""
    micro = root / "tensorflow/lite/micro"
    core = ["debug_log.cc", "flatbuffer_utils.cc", "memory_helpers.cc", "micro_allocation_info.cc",
            "micro_allocator.cc", "micro_context.cc", "micro_interpreter_context.cc", "micro_interpreter_graph.cc",
            "micro_interpreter.cc", "micro_log.cc", "micro_op_resolver.cc", "micro_profiler.cc",
            "micro_resource_variable.cc", "micro_utils.cc", "recording_micro_allocator.cc", "system_setup.cc",
            "esp/micro_time.cc"]
    sources = [micro / name for name in core]
    sources += sorted((micro / "tflite_bridge").glob("*.cc"))
    kernel_files = sorted((micro / "kernels").glob("*.cc"))
    if kernels != "reference":
        kernel_files = [k for k in kernel_files if k.name not in ESP_NN_REPLACES]
        kernel_files += sorted((micro / "kernels/esp_nn").glob("*.cc"))
    sources += kernel_files
    sources += sorted((root / "signal/micro/kernels").glob("*.cc")) + sorted((root / "signal/src").glob("*.cc"))
    sources += [root / "signal/src/kiss_fft_wrappers" / f"kiss_fft_{t}.cc" for t in ("float", "int16", "int32")]
    lite = root / "tensorflow/lite"
    sources += [lite / p for p in (
        "kernels/kernel_util.cc", "micro/memory_planner/greedy_memory_planner.cc",
        "micro/memory_planner/linear_memory_planner.cc",
        "micro/arena_allocator/non_persistent_arena_buffer_allocator.cc",
        "micro/arena_allocator/persistent_arena_buffer_allocator.cc",
        "micro/arena_allocator/recording_single_arena_buffer_allocator.cc",
        "micro/arena_allocator/single_arena_buffer_allocator.cc", "core/c/common.cc",
        "core/api/flatbuffer_conversions.cc", "core/api/tensor_utils.cc", "kernels/internal/common.cc",
        "kernels/internal/quantization_util.cc", "kernels/internal/portable_tensor_utils.cc",
        "kernels/internal/tensor_utils.cc", "kernels/internal/tensor_ctypes.cc",
        "kernels/internal/reference/portable_tensor_utils.cc")]
    mlir = root / "tensorflow/compiler/mlir/lite"
    sources += [mlir / "core/api/error_reporter.cc", mlir / "schema/schema_utils.cc"]
    missing = [str(s) for s in sources if not s.is_file()]
    if missing:
        raise CheckError(f"{root} is not an esp-tflite-micro tree; missing: {', '.join(missing[:3])}")
    return sources


def _tflm_tree_includes(root: Path) -> list[Path]:
    third = root / "third_party"
    return [root, third / "gemmlowp", third / "flatbuffers/include", third / "ruy", third / "kissfft"]


def _arduino_sources(lib: Path) -> list[Path]:
    """The Arduino library's TFLM (its src/ folder), without its board peripherals."""
    src = lib / "src" if (lib / "src").is_dir() else lib
    files = [p for p in sorted(src.rglob("*")) if p.suffix in (".c", ".cc", ".cpp") and "peripherals" not in p.parts
             and "examples" not in p.parts]
    if not any(p.name.startswith("micro_interpreter") for p in files):
        raise CheckError(f"{lib} holds no TFLM sources (micro_interpreter.*)")
    return files


class Builder:
    """Compiles sources into a cache folder (objects keyed by source, flags and content)."""

    def __init__(self, cache: Path, bits: int):
        self.cache = cache
        self.arch = [f"-m{bits}"]
        cache.mkdir(parents=True, exist_ok=True)

    def compile(self, sources: list[Path], flags: list[str]) -> list[Path]:
        def one(source: Path) -> Path:
            cxx = source.suffix in (".cc", ".cpp")
            command = ["g++" if cxx else "gcc", *self.arch, *(["-std=gnu++17"] if cxx else ["-std=gnu11"]),
                       *flags, "-c", str(source)]
            key = hashlib.sha256((" ".join(command) + "\0").encode() + source.read_bytes()).hexdigest()[:20]
            obj = self.cache / f"{source.stem}-{key}.o"
            if not obj.exists():
                done = subprocess.run([*command, "-o", str(obj) + ".tmp"], capture_output=True, text=True)
                if done.returncode:
                    raise CheckError(f"compiling {source} failed:\n{done.stderr[-4000:]}")
                os.replace(str(obj) + ".tmp", obj)
            return obj
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            return list(pool.map(one, sources))

    def link(self, objects: list[Path], out: Path, cxx: bool = True, extra: list[str] = ()) -> Path:
        command = ["g++" if cxx else "gcc", *self.arch, "-Wl,--gc-sections", *extra, *map(str, objects),
                   "-o", str(out), "-lpthread", "-lm"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise CheckError(f"linking failed:\n{done.stderr[-4000:]}")
        return out


def _board_kernels(project: dict) -> str:
    from tinydeploy.core.boards import get_board
    return get_board(project["board"]).tflm_kernels(project.get("framework") or "espidf")


@dataclass
class Library:
    """TFLM (with its kernels) and the framework stand-ins, compiled for the host."""
    objects: list[Path]
    platform: list[str]  # flags for code that includes the framework's headers
    includes: list[Path]  # TFLM's include folders
    kernels: str


def tflm_library(builder: Builder, framework: str, kernels: str, tflm: Path | None, esp_nn: Path | None,
                 arduino_lib: Path | None, line_baud: int = 115200) -> Library:
    """Compile TFLM for a framework and kernel library (objects are cached)."""
    shim_flags = [f"-DTD_LINE_BAUD={line_baud}", f"-I{SHIM}"]
    objects = builder.compile([SHIM / "host_uart.c", SHIM / "sleep_shim.c"], [*STRICT, "-O2", *shim_flags])
    if framework == "arduino":
        if arduino_lib is None:
            raise CheckError("an Arduino project needs --arduino-lib (the TFLM Arduino library's folder)")
        lib_src = arduino_lib / "src" if (arduino_lib / "src").is_dir() else arduino_lib
        includes = [lib_src, *(lib_src / "third_party" / p for p in ("flatbuffers/include", "gemmlowp", "ruy",
                                                                     "kissfft"))]
        platform = [f"-I{SHIM / 'arduino'}", *shim_flags, "-DARDUINO=100"]
        objects += builder.compile(_arduino_sources(arduino_lib),
                                   [*TFLM_FLAGS, *platform, *(f"-isystem{p}" for p in includes)])
        objects += builder.compile([SHIM / "arduino/arduino_shim.cc"], [*STRICT, "-O2", *platform])
        return Library(objects, platform, includes, kernels)
    if tflm is None:
        raise CheckError("an ESP-IDF project needs --tflm (an esp-tflite-micro tree)")
    if kernels != "reference" and esp_nn is None:
        raise CheckError(f"the {kernels} kernels need --esp-nn (an esp-nn tree)")
    includes = _tflm_tree_includes(tflm)
    platform = [f"-I{SHIM / 'espidf'}", *shim_flags]
    sources = _tflm_tree_sources(tflm, kernels)
    esp_nn_kernels = [s for s in sources if s.parent.name == "esp_nn"]
    objects += builder.compile([s for s in sources if s not in esp_nn_kernels],
                               [*TFLM_FLAGS, *platform, *(f"-isystem{p}" for p in includes)])
    if kernels != "reference":
        # Only the ESP-NN kernels see ESP-NN's headers (and, for the S3, the scratch-size override).
        nn_includes = [SHIM / "esp_nn_s3"] if kernels == "esp-nn-s3" else []
        nn_includes += [esp_nn / "include", esp_nn / "src/common"]
        objects += builder.compile(esp_nn_kernels, [*TFLM_FLAGS, *platform, "-DESP_NN=1", "-DCONFIG_NN_OPTIMIZED=1",
                                                    *(f"-isystem{p}" for p in [*nn_includes, *includes])])
        nn_sources = [esp_nn / "src" / s for s in ESP_NN_GENERIC]
        if kernels == "esp-nn-s3":
            nn_sources += [esp_nn / "src" / s for s in ESP_NN_S3_SIZES]
        objects += builder.compile(nn_sources, ["-O2", "-w", "-ffunction-sections", "-fdata-sections",
                                                "-DCONFIG_NN_OPTIMIZED=1",
                                                *(f"-I{p}" for p in (esp_nn / "include", esp_nn / "src/common"))])
    objects += builder.compile([SHIM / "espidf/espidf_shim.c"], [*STRICT, "-O2", *platform])
    return Library(objects, platform, includes, kernels)


def _link_flags(project_dir: Path) -> list[str]:
    """The linker options of platformio.ini's build_flags (e.g. -Wl,--wrap=DebugLog)."""
    flags = []
    for line in (project_dir / "platformio.ini").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "build_flags":
            flags += [f for f in value.split() if f.startswith("-Wl,")]
    return flags


def build(project_dir: Path, tflm: Path | None, esp_nn: Path | None, arduino_lib: Path | None,
          work: Path, bits: int = 32, kernels: str | None = None) -> tuple[Path, str]:
    """Build the project's firmware for the host. Returns (binary, kernel library used)."""
    project = json.loads((project_dir / "tinydeploy.json").read_text())
    src = project_dir / "src"
    work.mkdir(parents=True, exist_ok=True)
    builder = Builder(work.parent / "objects", bits)
    line_baud = project.get("baud", 115200)
    framework = project.get("framework") or "espidf"
    if project["engine"] == "c":
        if framework != "espidf":
            raise CheckError("the host check builds the C engine's ESP-IDF projects (Makefile projects: tinydeploy build)")
        shim_flags = [f"-DTD_LINE_BAUD={line_baud}", f"-I{SHIM}", f"-I{SHIM / 'espidf'}"]
        objects = builder.compile([SHIM / "host_uart.c", SHIM / "sleep_shim.c", SHIM / "espidf/espidf_shim.c"],
                                  [*STRICT, "-O2", *shim_flags])
        objects += builder.compile(sorted(src.glob("*.c")), [*STRICT, "-O2", "-std=c99", *shim_flags, f"-I{src}",
                                                               f"-DTD_BAUD={line_baud}"])
        return builder.link(objects, work / "firmware", cxx=False), "c engine"
    lib = tflm_library(builder, framework, kernels or _board_kernels(project), tflm, esp_nn, arduino_lib, line_baud)
    app = sorted(p for p in src.iterdir() if p.suffix in (".c", ".cc", ".cpp"))
    # render --model-partition: the model in flash slots, files in $TD_HOST_FLASH (esp_partition_shim.c)
    slots = ["-DTD_MODEL_PARTITION"] if project.get("model_slots") else []
    objects = lib.objects + builder.compile(app, [*STRICT, "-O2", *lib.platform, f"-I{src}", f"-DTD_BAUD={line_baud}",
                                                  *(f"-isystem{p}" for p in lib.includes), "-DTF_LITE_STATIC_MEMORY",
                                                  *slots])
    if slots:
        objects += builder.compile([SHIM / "espidf/esp_partition_shim.c"], [*STRICT, "-O2", *lib.platform])
    return builder.link(objects, work / "firmware", extra=_link_flags(project_dir)), lib.kernels


class PtyDevice:
    """The host firmware on the master side of a pty; bench opens the slave path.

    The firmware starts only once the slave has been opened (its boot lines would
    otherwise be flushed by the port's open), like a board reset as the port opens.
    """

    def __init__(self, binary: Path, log: Path):
        self.master, slave = pty.openpty()
        import tty
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        os.close(slave)
        self.binary, self.log = binary, log
        self.report = log.with_name("uart-report.txt")
        self.process = None

    def start_when_opened(self, timeout: float = 30.0) -> None:
        poller = select.poll()
        poller.register(self.master, select.POLLHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(event & select.POLLHUP for _, event in poller.poll(20)):
                break
        time.sleep(0.2)
        with open(self.log, "wb") as stderr:
            self.process = subprocess.Popen([str(self.binary)], stdin=self.master, stdout=self.master, stderr=stderr,
                                            env={**os.environ, "TD_HOST_UART_REPORT": str(self.report)})

    def stop(self) -> str:
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        os.close(self.master)
        return self.log.read_text(errors="replace").strip()

    def dropped_bytes(self) -> int | None:
        """Received bytes the firmware's UART buffer had no room for (None: not reported)."""
        text = self.report.read_text(errors="replace") if self.report.exists() else ""
        found = re.search(r"host uart: (\d+) received bytes dropped", text)
        return int(found.group(1)) if found else None


def run_bench(binary: Path, out: Path, model: Path | None, data: str | None, validate: int,
              runs: int = 5, timeout: float = 20.0, profile: bool = False) -> dict:
    """Bench the host firmware through `tinydeploy bench`; returns results.json plus the exit code."""
    out.mkdir(parents=True, exist_ok=True)
    device = PtyDevice(binary, out / "firmware-stderr.log")
    if device.report.exists():
        device.report.unlink()
    command = [sys.executable, "-m", "tinydeploy", "bench", "--port", device.path, "--out", str(out),
               "--runs", str(runs), "--warmup", "1", "--timeout", str(timeout), "--json"]
    if model is not None:
        command += ["--expect-model", str(model)]
    if validate:
        command += ["--validate", str(validate), "--data", data or "digits"]
    if profile:
        command.append("--profile")
    if (out / "results.json").exists():
        (out / "results.json").unlink()
    bench = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    device.start_when_opened()
    stdout, stderr = bench.communicate()
    firmware_log = device.stop()
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    return {"exit_code": bench.returncode, "results": results, "stderr": stderr.strip(),
            "firmware_stderr": firmware_log, "rx_dropped_bytes": device.dropped_bytes()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path, help="a folder written by tinydeploy render")
    parser.add_argument("--tflm", type=Path, help="an esp-tflite-micro source tree (ESP-IDF projects)")
    parser.add_argument("--esp-nn", type=Path, help="an esp-nn source tree (boards whose kernels are ESP-NN)")
    parser.add_argument("--arduino-lib", type=Path, help="the TFLM Arduino library's folder (Arduino projects)")
    parser.add_argument("--model", type=Path, help="the .tflite the project was rendered from (hash check, --validate)")
    parser.add_argument("--data", default="digits", help="labelled samples for --validate (default digits)")
    parser.add_argument("--validate", type=int, default=0, metavar="N")
    parser.add_argument("--profile", action="store_true", help="also time each layer (bench --profile)")
    parser.add_argument("--kernels", choices=("reference", "esp-nn", "esp-nn-s3"),
                        help="link another kernel library than the board profile's (ESP-IDF projects)")
    parser.add_argument("--bits", type=int, choices=(32, 64), default=32, help="host build width (default 32)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tinydeploy-host-check")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    args = parser.parse_args(argv)
    project = args.project.resolve()
    if not (project / "tinydeploy.json").is_file():
        print(f"error: {project} has no tinydeploy.json (render a project first)", file=sys.stderr)
        return 2
    work = args.work / hashlib.sha256(f"{project} {args.kernels}".encode()).hexdigest()[:12]
    try:
        binary, kernels = build(project, args.tflm, args.esp_nn, args.arduino_lib, work, args.bits,
                                 args.kernels)
    except CheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    outcome = run_bench(binary, work / "bench", args.model, args.data, args.validate, profile=args.profile)
    outcome.update({"project": str(project), "kernels": kernels, "bits": args.bits, "binary": str(binary)})
    if args.json:
        print(json.dumps(outcome, indent=2))
    else:
        r = outcome["results"]
        device = r.get("device", {})
        print(f"{project.name}: {kernels} kernels, {args.bits}-bit host build")
        used = device.get("arena_used_bytes")
        print(f"  arena: {device.get('arena_bytes')} B in the firmware, "
              + (f"{used} B used" if used is not None else "the model is not set up"))
        if r.get("validation"):
            v = r["validation"]
            print(f"  validate: {v['samples']} samples, top-1 agreement {v['top1_agreement']:.2%}, "
                  f"max diff {v['max_output_diff_lsb']} LSB")
        if r.get("profile"):
            layers = r["profile"]["layers"]
            print(f"  profile: {len(layers)} layers, " + ", ".join(f"{layer.get('op', '?')} {layer['ticks']}"
                                                              for layer in layers) + f" ({r['profile']['timer']})")
        print(f"  received bytes dropped by the firmware's UART buffer: {outcome['rx_dropped_bytes']}")
        print(f"  bench exit code {outcome['exit_code']}" + (f": {outcome['stderr']}" if outcome["stderr"] else ""))
        if outcome["firmware_stderr"]:
            print(f"  firmware stderr: {outcome['firmware_stderr']}")
    return 0 if outcome["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
