"""Frameworks: how a rendered project is built and what it links. A registry of small
classes; adding a framework is adding a class here (and its templates), with no
`if framework` anywhere else.

- ``espidf``: PlatformIO with ESP-IDF; TFLM from Espressif's esp-tflite-micro, with ESP-NN.
- ``arduino``: PlatformIO with Arduino; TFLM from an Arduino library, without ESP-NN.
- ``make``: a board with its own cross compiler (a profile with [toolchain]): a Makefile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinydeploy.core.boards import Board
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import Model
from tinydeploy.core.names import ARDUINO, C, ESPIDF, MAKE, TFLM

ESP_TFLITE_MICRO = ">=1.3.7"  # earlier versions could send every CONV_2D down the slow reference path
ARDUINO_TFLM_LIBRARY = "spaziochirale/Chirale_TensorFLowLite"


@dataclass
class BuildFiles:
    """What a framework adds to a project: {project path: template}, the sources its build
    compiles (beyond the engine's own), tinydeploy firmware/ files to copy, and how to run it."""
    templates: dict[str, str]
    sources: list[str] = field(default_factory=list)
    firmware: list[str] = field(default_factory=list)
    how_to: list[str] = field(default_factory=list)


def sdkconfig(board: Board) -> list[str]:
    # No console baud key: Kconfig drops CONFIG_ESP_CONSOLE_UART_BAUDRATE unless a custom console
    # UART is chosen; the firmware sets UART0's rate itself.
    return [f"CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ_{board.cpu_mhz}=y",
            "CONFIG_ESP_MAIN_TASK_STACK_SIZE=8192",
            "CONFIG_ESP_TASK_WDT_CHECK_IDLE_TASK_CPU0=n"]


class _ComputesEveryModel:
    """A framework whose TFLM kernels compute every int8 model the host's interpreter does."""
    per_tensor_dense = False  # optimize converts dense layers per output channel, TFLite's default

    def model_problems(self, model: Model) -> list[str]:
        """Why this framework's kernels would answer differently from the host for this model
        (empty: they compute it as the host does)."""
        return []


class EspIdf(_ComputesEveryModel):
    name = ESPIDF
    tflm_library = f"esp-tflite-micro{ESP_TFLITE_MICRO}"
    runtime_note = "ESP-IDF, Espressif's esp-tflite-micro with the ESP-NN optimized kernels"
    engines = (TFLM, C)  # the C engine's firmware has an ESP-IDF platform layer (firmware/hal_espidf.c)
    def partition_values(self, board: Board) -> dict:
        """What --model-partition adds to the build: the custom partition table in sdkconfig
        and platformio.ini (board_build.partitions), and the slots' flash driver
        (esp_partition_mmap keeps the model in flash slots, read in place)."""
        return {"sdkconfig": ["CONFIG_PARTITION_TABLE_CUSTOM=y",
                              'CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="partitions.csv"'],
                "extra": [("board_build.partitions", "partitions.csv")], "sources": ["hal_espidf_slots.c"]}

    def applies_to(self, board: Board) -> bool:
        return board.toolchain is None

    def values(self, board: Board) -> dict:
        return {"f_cpu": f"{board.cpu_mhz * 1_000_000}L", "sdkconfig": sdkconfig(board), "extra": [],
                "esp_tflite_micro": ESP_TFLITE_MICRO}

    def tflm_files(self, board: Board) -> BuildFiles:
        """A TFLM project's build files and platform layer, beyond the engine's own files."""
        return BuildFiles({"platformio.ini": "common/platformio.ini.j2", "CMakeLists.txt": "espidf/CMakeLists.txt.j2",
                           "src/CMakeLists.txt": "espidf/src_CMakeLists.txt.j2",
                           "src/idf_component.yml": "espidf/idf_component.yml.j2",
                           "sdkconfig.defaults": "espidf/sdkconfig.defaults.j2"},
                          sources=["hal_espidf.c"], firmware=["hal_espidf.c"])

    def c_files(self, board: Board) -> BuildFiles:
        """The C engine's build files, with its ESP-IDF platform layer."""
        return BuildFiles({"platformio.ini": "common/platformio.ini.j2", "CMakeLists.txt": "espidf/CMakeLists.txt.j2",
                           "sdkconfig.defaults": "espidf/sdkconfig.defaults.j2",
                           "src/CMakeLists.txt": "cengine/src_CMakeLists.txt.j2"},
                          sources=["hal_espidf.c"], firmware=["hal_espidf.c"],
                          how_to=["pio run -d DIR", "pio run -d DIR -t upload --upload-port PORT",
                                  "tinydeploy bench --port PORT"])


class Arduino:
    name = ARDUINO
    tflm_library = ARDUINO_TFLM_LIBRARY
    # optimize --framework arduino converts dense layers per tensor, which its FULLY_CONNECTED
    # computes as the host does (model_problems says why per channel would not)
    per_tensor_dense = True
    runtime_note = f"Arduino, {ARDUINO_TFLM_LIBRARY}: current TFLM API with CMSIS-NN's portable C kernels, no ESP-NN"
    engines = (TFLM,)

    def model_problems(self, model: Model) -> list[str]:
        """The library's FULLY_CONNECTED is CMSIS-NN's (Chirale_TensorFlowLite 2.0.0,
        kernels/cmsis_nn/fully_connected.cpp): it requantizes every output channel with the
        first channel's multiplier, so a layer quantized per channel answers differently from the
        host (the demo model agreed on 93% of samples, up to 255 LSB apart, in a host build of
        the library; issue 29). Per-tensor dense layers it computes exactly."""
        per_channel = [op.index for op in model.operators if op.name == "FULLY_CONNECTED" and len(op.inputs) > 1
                       and _channel_scales(model, op.inputs[1]) > 1]
        if not per_channel:
            return []
        return [f"FULLY_CONNECTED operator{'s' * (len(per_channel) > 1)} {', '.join(map(str, per_channel))} "
                f"{'are' if len(per_channel) > 1 else 'is'} quantized per output channel, but "
                f"{ARDUINO_TFLM_LIBRARY}'s FULLY_CONNECTED (CMSIS-NN) applies one multiplier to every channel, so "
                "the board would answer differently from the host. Render with --framework espidf, or make the "
                "model with per-tensor dense layers: `tinydeploy optimize ... --framework arduino` (or "
                "tinydeploy.optimize.convert.to_int8_tflite(..., per_tensor_dense=True); TFLiteConverter's "
                "_experimental_disable_per_channel_quantization_for_dense_layers = True)"]

    def applies_to(self, board: Board) -> bool:
        return board.toolchain is None

    def values(self, board: Board) -> dict:
        # The library's log goes to __wrap_DebugLog (hal_arduino.cpp), not into the protocol stream.
        return {"f_cpu": f"{board.cpu_mhz * 1_000_000}L", "sdkconfig": [],
                "extra": [("lib_deps", ARDUINO_TFLM_LIBRARY), ("build_flags", "-Wl,--wrap=DebugLog"),
                          ("build_src_flags", f"-DTD_BAUD={board.baud}")]}

    def tflm_files(self, board: Board) -> BuildFiles:
        """A TFLM project's platformio.ini and platform layer (PlatformIO compiles all of src/)."""
        return BuildFiles({"platformio.ini": "common/platformio.ini.j2"}, firmware=["hal_arduino.cpp"])


def _channel_scales(model: Model, tensor: int) -> int:
    quantization = model.tensors[tensor].quantization
    return len(quantization.scales) if quantization is not None else 0


class Make(_ComputesEveryModel):
    name = MAKE
    tflm_library = None  # no TFLM build for a bare cross compiler
    runtime_note = "the board's own cross compiler (a Makefile)"
    engines = (C,)

    def applies_to(self, board: Board) -> bool:
        return board.toolchain is not None

    def values(self, board: Board) -> dict:
        tc = board.toolchain
        return {"cc": tc["cc"], "size": tc["size"], "cflags": " ".join(tc["cflags"]),
                "ldflags": " ".join(tc["ldflags"]), "packages": " ".join(tc["packages"]),
                "linker_script": f"src/{tc['linker_script']}"}

    def partition_values(self, board: Board) -> dict:
        """What --model-partition adds to the build: the board's own flash driver for the slots
        (its profile's [toolchain] slot_sources), at the partition table's offsets."""
        sources = list(board.toolchain.get("slot_sources") or [])
        if not sources:
            raise BadInput(f"--model-partition: {board.name}'s profile names no flash driver for the model slots "
                           "([toolchain] slot_sources)")
        return {"sdkconfig": [], "extra": [], "sources": sources}

    def c_files(self, board: Board) -> BuildFiles:
        tc = board.toolchain
        how_to = ["tinydeploy build DIR"]
        if board.emulated:
            how_to += ["tinydeploy emulate DIR --port-file DIR/port.txt &", "tinydeploy bench --port $(cat DIR/port.txt)"]
        return BuildFiles({"Makefile": "make/Makefile.j2"}, sources=list(tc["sources"]),
                          firmware=[*tc["sources"], tc["linker_script"]], how_to=how_to)


FRAMEWORKS = {framework.name: framework for framework in (EspIdf(), Arduino(), Make())}


def framework_for(board: Board, name: str | None = None, engine: str | None = None):
    """The framework to render for (the board's own when name is None).

    Raises:
        BadInput: an unknown framework, or one that doesn't build for this board or engine.
    """
    name = name or board.framework
    if name not in FRAMEWORKS:
        raise BadInput(f"unknown framework '{name}'. Frameworks: {', '.join(FRAMEWORKS)}")
    framework = FRAMEWORKS[name]
    if not framework.applies_to(board):
        usable = [f.name for f in FRAMEWORKS.values() if f.applies_to(board)]
        raise BadInput(f"--framework {name} doesn't build for {board.name}; frameworks for it: {', '.join(usable)}")
    if engine is not None and engine not in framework.engines:
        usable = [f.name for f in FRAMEWORKS.values() if f.applies_to(board) and engine in f.engines]
        raise BadInput(f"--framework {name} doesn't build the {engine} engine; for {board.name} it is built with "
                       f"--framework {' or '.join(usable)}")
    return framework
