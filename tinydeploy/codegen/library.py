"""`tinydeploy export`: an int8 model as a library for the user's own application.

Pure: ``export`` returns ``{relative path: text}``; tinydeploy.toolchain.project writes it.
A library is one public header, ``<name>.h``, with a typed API the same for both engines
(setup, classify a raw float window or an int8 input, streaming with a hop and smoothing),
and, behind it, the engine's runner (td_runner.h: td_c_runner.c or td_tflm_runner.cc, the
same files the benchmark firmware runs) with the model, and the model's front end when its
metadata has one. Every global name in those sources gets the model's name as a prefix (a
generated ``<name>_symbols.h`` that every source includes first), so two exported models link
into one program. What differs by packaging (an ESP-IDF component, an Arduino/PlatformIO
library, a plain C library with CMake) is in KINDS; what differs by engine is in the engine
registry (tinydeploy.codegen.engines: library_files, needs_tflm).
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from tinydeploy import __version__
from tinydeploy.codegen import cgen, package, partitions
from tinydeploy.codegen.engines import ENGINES, Prepared
from tinydeploy.codegen.frameworks import ARDUINO_TFLM_LIBRARY, ESP_TFLITE_MICRO, FRAMEWORKS
from tinydeploy.codegen.frontend_source import frontend_sources
from tinydeploy.codegen.render import INFO_LIMIT, SLOT_FIRMWARE, partition_values
from tinydeploy.codegen.templating import BANNER, copied_firmware, environment
from tinydeploy.core.boards import Board
from tinydeploy.core import protocol
from tinydeploy.core.bounds import check
from tinydeploy.core.errors import BadInput
from tinydeploy.core.frontend import Frontend, model_frontend
from tinydeploy.core.model import Model
from tinydeploy.core.names import ARDUINO, C, ESPIDF, TFLM

__all__ = ["KINDS", "ExportOptions", "Recording", "c_name", "export", "library_layout"]

SMOOTHING_MAX = 16  # results the streaming state keeps by default (NAME_SMOOTHING_MAX)
RECORDING_WINDOWS = 4  # windows of the user's data compiled into the example
VERSION = "1.0.0"  # the library's own version in its manifests
# Names the generated sources define outside the td_ prefix (model_data.cc, td_board.c).
OTHER_GLOBALS = r"g_model_[A-Za-z0-9_]+|kInfoFormat|kDeviceName|kModelName"
_GLOBAL = re.compile(r"\b(td_[a-z0-9_]+|" + OTHER_GLOBALS + r")\b")


def c_name(text: str) -> str:
    """text escaped to a C identifier that is usable as a prefix: every character outside
    [A-Za-z0-9_] becomes '_', runs of '_' become one, a leading digit or underscore gets
    'm' before it, and a C/C++ keyword gets '_model' after it."""
    name = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", text, flags=re.ASCII)).strip("_") or "model"
    if name[0].isdigit():
        name = "m" + name
    if name in cgen.C_KEYWORDS:
        name += "_model"
    return cgen.identifier(name)


@dataclass(frozen=True)
class Recording:
    """A few raw windows for the example app (flattened as the float API takes them) and,
    where known, their true labels."""
    windows: np.ndarray
    labels: tuple[str, ...] = ()
    origin: str = ""


@dataclass(frozen=True)
class ExportOptions:
    """kind: a KINDS name; engine: an engine name (default: the kind's first); name: the C
    prefix (escaped by c_name); window: the steps of one window, where the model's input
    does not say (a flat input); hop: steps between classified windows (default the window:
    no overlap); smoothing: results averaged by the streaming API (1: none)."""
    kind: str
    engine: str | None = None
    name: str = "model"
    labels: tuple[str, ...] = ()
    window: int | None = None
    hop: int | None = None
    smoothing: int = 1
    arena_margin_percent: float = 10.0
    recording: Recording | None = None
    model_partition: bool = False  # the model in two flash slots (A/B), updated by the application


class _Kind(ABC):
    """A packaging: its name, the framework whose TFLM it links (None: none), the engines it
    takes, where the public header and the sources go, its clock (td_clock: the time a
    result reports) and its manifests and example."""
    name = ""
    framework: str | None = None
    engines: tuple[str, ...] = ()
    header_dir = "src"
    source_dir = "src"
    clock = ""

    @abstractmethod
    def values(self, name: str, engine) -> dict:
        """What its templates substitute beyond the library's values."""

    @abstractmethod
    def manifests(self, values: dict, env) -> dict[str, str]:
        """{path: text} of the manifests and the example app."""


class IdfComponent(_Kind):
    """An ESP-IDF component: CMakeLists.txt (idf_component_register), idf_component.yml, and
    an example project in examples/<name>/."""
    name = "idf-component"
    framework = ESPIDF
    engines = (TFLM, C)
    header_dir = "include"
    clock = "library/clock_espidf.c.j2"

    def values(self, name: str, engine) -> dict:
        depends = [f'  espressif/esp-tflite-micro: "{ESP_TFLITE_MICRO}"'] if engine.needs_tflm else []
        return {"kind_description": "an ESP-IDF component", "entry_template": "library/example_entry_idf.j2",
                "idf_requires": ["esp_timer", *(["esp-tflite-micro"] if engine.needs_tflm else [])],
                "idf_dependencies": ["dependencies:", *depends] if depends else [],
                "how_to": [f"Copy this folder to your project's `components/{name}/` (or name it in "
                           "`main/idf_component.yml` with `path:`), and add it to your component's `REQUIRES`."]}

    def manifests(self, values: dict, env) -> dict[str, str]:
        name = values["name"]
        templates = {"CMakeLists.txt": "library/idf_CMakeLists.txt.j2",
                     "idf_component.yml": "library/idf_component.yml.j2",
                     f"examples/{name}/CMakeLists.txt": "library/idf_example_CMakeLists.txt.j2",
                     f"examples/{name}/main/CMakeLists.txt": "library/idf_example_main_CMakeLists.txt.j2",
                     f"examples/{name}/main/idf_component.yml": "library/idf_example_component.yml.j2",
                     f"examples/{name}/main/main.c": "library/example_main.c.j2",
                     f"examples/{name}/main/recording.h": "library/recording.h.j2"}
        return {path: env.get_template(t).render(**values) for path, t in templates.items()}


class ArduinoLibrary(_Kind):
    """An Arduino library (library.properties, src/, examples/<name>/<name>.ino) that is a
    PlatformIO library too (library.json)."""
    name = "arduino-library"
    framework = ARDUINO
    engines = (TFLM, C)
    clock = "library/clock_arduino.cpp.j2"

    def values(self, name: str, engine) -> dict:
        owner, library = ARDUINO_TFLM_LIBRARY.split("/")
        manifest = {"name": name, "version": VERSION,
                    "description": f"{name}: a tinydeploy model ({engine.name} engine) with a typed C/C++ API "
                                   f"({BANNER})",
                    "keywords": ["tinyml", "machine learning", "tinydeploy"],
                    "frameworks": [ARDUINO], "platforms": ["espressif32"] if engine.needs_tflm else ["*"],
                    "headers": [f"{name}.h"]}
        if engine.needs_tflm:
            manifest["dependencies"] = [{"owner": owner, "name": library}]
        return {"kind_description": "an Arduino library (and a PlatformIO library)",
                "library_json": json.dumps(manifest, indent=2), "entry_template": "",
                "arduino_architectures": "esp32" if engine.needs_tflm else "*",
                # the Arduino library manager's name of the TFLM library (its library.properties)
                "arduino_depends": ["depends=Chirale_TensorFLowLite"] if engine.needs_tflm else [],
                "how_to": [f"Arduino IDE: Sketch > Include Library > Add .ZIP Library (this folder, zipped), or "
                           f"copy it to your libraries folder as `{name}`. PlatformIO: `lib_deps = file://PATH` in "
                           "platformio.ini, or copy it to the project's `lib/`. Include `<" + name + ".h>`."]}

    def manifests(self, values: dict, env) -> dict[str, str]:
        name = values["name"]
        templates = {"library.properties": "library/library.properties.j2", "library.json": "library/library.json.j2",
                     f"examples/{name}/{name}.ino": "library/example.ino.j2",
                     f"examples/{name}/recording.h": "library/recording.h.j2"}
        return {path: env.get_template(t).render(**values) for path, t in templates.items()}


class CLibrary(_Kind):
    """A plain C99 library with a CMakeLists.txt (a static library and the example), for the C
    engine on any MCU or host."""
    name = "c-library"
    framework = None
    engines = (C,)
    header_dir = "include"
    clock = "library/clock_c.c.j2"

    def values(self, name: str, engine) -> dict:
        return {"kind_description": "a plain C99 library", "entry_template": "library/example_entry_c.j2",
                "how_to": [f"CMake: `add_subdirectory({name})` and `target_link_libraries(app PRIVATE {name})`. "
                           f"Any other build: compile `src/*.c` with `-Isrc -Iinclude` and add `include/` to your "
                           f"include path. `cmake -S . -B build && cmake --build build && ./build/{name}_example` "
                           "runs the example on this computer."]}

    def manifests(self, values: dict, env) -> dict[str, str]:
        name = values["name"]
        templates = {"CMakeLists.txt": "library/c_CMakeLists.txt.j2",
                     f"examples/{name}/main.c": "library/example_main.c.j2",
                     f"examples/{name}/recording.h": "library/recording.h.j2"}
        return {path: env.get_template(t).render(**values) for path, t in templates.items()}


KINDS = {kind.name: kind for kind in (IdfComponent(), ArduinoLibrary(), CLibrary())}


def kind_for(name: str):
    if name not in KINDS:
        raise BadInput(f"unknown --kind '{name}'. Kinds: {', '.join(KINDS)}")
    return KINDS[name]


def engine_for_kind(kind, name: str | None):
    """The engine a kind is exported with (its first when name is None)."""
    name = name or kind.engines[0]
    if name not in ENGINES:
        raise BadInput(f"unknown engine '{name}'. Engines: {', '.join(ENGINES)}")
    if name not in kind.engines:
        raise BadInput(f"--kind {kind.name} takes the {' or '.join(kind.engines)} engine, not {name}; "
                       f"export with --engine {kind.engines[0]}, or choose another --kind")
    return ENGINES[name]


@dataclass
class Layout:
    """How raw values reach the model: steps x channels floats per window, through the front
    end when there is one (else quantized with the input's scale and zero point)."""
    steps: int
    channels: int
    frontend: Frontend | None = None

    @property
    def size(self) -> int:
        return self.steps * self.channels


def _quant(tensor) -> tuple[float, int]:
    q = tensor.quantization
    return (q.scales[0], q.zero_points[0]) if q else (1.0, 0)


def library_layout(model: Model, window: int | None = None) -> Layout:
    """The raw window the library takes: the model metadata's front end and window when it
    has them; else its input shape as steps (the first axis, or window) x channels (the rest)."""
    tensor = model.input_tensors[0]
    elements = tensor.elements
    found = model_frontend(model.meta)
    if found is not None:
        frontend, (steps, channels) = found
        scale, zero = _quant(tensor)
        frontend = frontend.with_output(scale, zero)  # the features are the network's input: its quantization
        produced = frontend.plan((steps, channels)).output_size
        if produced != elements:
            raise BadInput(f"{model.path}: its front end makes {produced} features from a {steps}x{channels} window "
                           f"but the model takes {elements} inputs")
        if window is not None and window != steps:
            raise BadInput(f"--window {window}: the model's front end takes windows of {steps} steps "
                           f"(its metadata); drop --window")
        return Layout(steps, channels, frontend)
    shape = list(tensor.shape[1:]) or [1]
    if window is not None:
        check("--window", window)
        if elements % window:
            raise BadInput(f"--window {window}: the model takes {elements} input values, which is not a whole "
                           f"number of samples of {window} steps; give a divisor of {elements}")
        return Layout(window, elements // window)
    window_meta = model.meta.get("window")
    if window_meta and window_meta[0] * window_meta[1] == elements:
        return Layout(int(window_meta[0]), int(window_meta[1]))
    return Layout(int(shape[0]), int(math.prod(shape[1:])))


def _labels(model: Model, given: tuple[str, ...], classes: int) -> tuple[list[str], list[str]]:
    """(the class labels, notes): given ones, else the model's metadata, else numbers."""
    labels = list(given) or list(model.labels or ())
    if labels and len(labels) != classes:
        raise BadInput(f"{len(labels)} labels but the model has {classes} outputs")
    if labels:
        return labels, []
    return [str(i) for i in range(classes)], [
        f"the model has no class labels: the library names its {classes} classes 0..{classes - 1}; give "
        "--labels FILE (one per line, or optimize's report.json), or a model from `tinydeploy optimize`, "
        "which stores them"]


def _recording_values(recording: Recording | None, layout: Layout) -> dict:
    notes = []
    if recording is None or len(recording.windows) == 0:
        windows = np.zeros((1, layout.size), np.float32)
        truth = [""]
        origin = "no data given (--data): one window of zeros; replace it with your sensor's"
        notes.append("no --data: the example's recording is one window of zeros")
    else:
        windows = np.asarray(recording.windows, np.float32)[:RECORDING_WINDOWS].reshape(
            min(RECORDING_WINDOWS, len(recording.windows)), -1)
        if windows.shape[1] != layout.size:
            raise BadInput(f"--data: its samples hold {windows.shape[1]} values but the model's window is "
                           f"{layout.steps} steps x {layout.channels} channels = {layout.size} values")
        truth = list(recording.labels[:len(windows)]) or [""] * len(windows)
        origin = recording.origin
    rows = []
    for window in windows:
        values = [cgen.float_literal(v) for v in window.astype(np.float32)]
        rows.append([", ".join(values[i:i + 8]) + "," for i in range(0, len(values), 8)])
    return {"recording_rows": rows, "recording_truth": [cgen.string_literal(t) for t in truth],
            "recording_origin": cgen.comment(origin), "recording_notes": notes}


def _info_format(model: Model, arena_bytes: int, name: str, kind: str, engine: str) -> str:
    """The info% line of the library's benchmark protocol (NAME_bench_start), with render's two
    %s: arena_used_bytes and setup_error."""
    info = protocol.device_info(model, arena_bytes, engine=engine, timer="us", library=name, kind=kind,
                                tinydeploy=__version__)
    text = '{"arena_used_bytes":%s,"setup_error":%s,' + json.dumps(info, separators=(",", ":"))[1:].replace("%", "%%")
    if len(text) > INFO_LIMIT:
        raise BadInput(f"the library's info line would be {len(text)} characters (limit {INFO_LIMIT})")
    return text


def _with_prefix(text: str, include: str) -> str:
    return f'#include "{include}" /* every global name here carries the library\'s prefix */\n' + text


def _slot_values(values: dict, prepared: Prepared, engine, framework, arena_bytes: int, board: Board, kind,
                 options: ExportOptions, env) -> dict:
    """What --model-partition changes in a library (none of it without): the slots' sources and
    contract (render.partition_values), setup booting the slot, the update API, and the serial
    protocol's `model` commands in NAME_bench_start."""
    none = {"slot_sources": [], "slot_defines": [], "slot_includes": [], "setup_before": [], "setup_after": [],
            "error_cases": [], "bench_lines": [], "update_codes": [], "update_api": ""}
    if not options.model_partition:
        return none
    if framework is None or not hasattr(framework, "partition_values"):
        usable = [k.name for k in KINDS.values() if k.framework and hasattr(FRAMEWORKS[k.framework],
                                                                              "partition_values")]
        raise BadInput(f"--model-partition: --kind {kind.name} has no flash driver for the model slots; "
                       f"export it as --kind {' or '.join(usable)}")
    slot = dict(values, **none)
    plan = prepared.lowered if engine.fixed_plan else None
    model = prepared.model
    contract = package.contract(model, engine.name, arena_bytes, engine.info(board, framework).get("kernels"), plan)
    partition_values(slot, model, plan, contract, framework, board)
    macro, name = values["macro"], values["name"]
    slot.update({
        "slot_includes": ['#include "td_main_slots.h" /* the model in a flash slot (--model-partition) */'],
        "setup_before": ["const char *slot_error = td_main_slots_boot(); /* before the runner: it reads the slot */"],
        "setup_after": ["if (slot_error != NULL) error = slot_error;",
                        "if (error == NULL) td_main_slots_wrap(&platform); /* the first run decides a slot on trial */"],
        "error_cases": [f'case {macro}_ERR_UPDATE: return "the model update failed: {name}_update_error() says why";'],
        "bench_lines": ["td_protocol_set_extension(&bench, td_slots_command, td_slots_byte, td_main_slots());"],
        "update_codes": [f"#define {macro}_ERR_UPDATE (-8)        /* a model update refused or failed */"],
        "idf_requires": [*values.get("idf_requires", []), "driver", "esp_partition"],
    })
    slot["update_api"] = env.get_template("library/update_api.h.j2").render(**slot)
    return {key: slot[key] for key in (*none, "slot_platform", "partitions", "contract", "contract_ops",
                                       "contract_kernels", "contract_input", "contract_input_rank",
                                       "contract_output", "contract_output_rank", "contract_plan",
                                       "board_defines", "idf_requires")}


def export(model: Model, board: Board, options: ExportOptions,
           prepared: Prepared | None = None) -> tuple[dict[str, str], dict]:
    """Render a library for an int8 model.

    Args:
        model: a full-int8 model with one input and one output.
        board: the board a TFLM arena is sized for (its kernels' scratch); the C engine's
            static plan is the same on any board.
        options: the kind, engine, name, labels, window, hop, smoothing and recording.
        prepared: the engine's view of the model, when the caller has it already.

    Returns:
        ({relative path: text}, a summary: name, kind, engine, window, hop, notes).

    Raises:
        BadInput: an unknown kind or engine, a kind without the engine, a model the engine
            can't run, labels that don't match the outputs, a window, hop or smoothing out of
            bounds, or data whose samples are not the model's window.
    """
    kind = kind_for(options.kind)
    engine = engine_for_kind(kind, options.engine)
    name = c_name(options.name)
    macro = name.upper()
    check("--arena-margin", options.arena_margin_percent)
    check("--smoothing", options.smoothing)
    if options.window is not None:
        check("--window", options.window)
    if options.hop is not None:
        check("--hop", options.hop)
    if len(model.outputs) != 1 or len(model.inputs) != 1:
        raise BadInput(f"{model.path}: a library takes a model with one input and one output")
    layout = library_layout(model, options.window)
    hop = layout.steps if options.hop is None else options.hop
    check("--hop", hop)
    out_tensor, in_tensor = model.output_tensors[0], model.input_tensors[0]
    classes = out_tensor.elements
    labels, notes = _labels(model, options.labels, classes)
    prepared = prepared or engine.prepare(model)
    framework = FRAMEWORKS[kind.framework] if kind.framework else None
    arena_bytes, need = engine.arena(prepared, board, framework, options.arena_margin_percent)
    in_scale, in_zero = _quant(in_tensor)
    out_scale, out_zero = _quant(out_tensor)
    env = environment()
    values = {
        "banner": BANNER, "name": name, "macro": macro, "kind": kind.name, "engine": engine.name,
        "model_name": cgen.comment(options.name), "sha256": model.sha256, "model_bytes": model.size_bytes,
        "labels": labels, "label_literals": [cgen.string_literal(x) for x in labels],
        "label_comments": [cgen.comment(x) for x in labels], "classes": classes,
        "arena_bytes": arena_bytes, "arena_need": need, "margin_percent": f"{options.arena_margin_percent:g}",
        "input_size": in_tensor.elements, "input_shape": list(in_tensor.shape[1:]),
        "input_scale": cgen.float_literal(in_scale), "input_zero_point": in_zero,
        "output_scale": cgen.float_literal(out_scale), "output_zero_point": out_zero,
        "steps": layout.steps, "channels": layout.channels, "window_size": layout.size,
        "hop": hop, "smoothing": options.smoothing, "smoothing_max": max(SMOOTHING_MAX, options.smoothing),
        "frontend": layout.frontend is not None,
        "frontend_description": cgen.comment(layout.frontend.describe()) if layout.frontend else "",
        "needs_tflm": engine.needs_tflm, "esp_tflite_micro": ESP_TFLITE_MICRO,
        "arduino_tflm_owner": ARDUINO_TFLM_LIBRARY.split("/")[0],
        "arduino_tflm_name": ARDUINO_TFLM_LIBRARY.split("/")[1],
        "version": VERSION, "tinydeploy_version": __version__, "header_dir": kind.header_dir,
        "info_format": cgen.string_literal(_info_format(model, arena_bytes, name, kind.name, engine.name)),
        "device_name": cgen.string_literal(f"tinydeploy-{name}"),
        "model_name_literal": cgen.string_literal(f"{name} {model.sha256[:12]}"),
        **_recording_values(options.recording, layout),
        **kind.values(name, engine),
    }
    values.update({
        "board_defines": [],  # the user's application is the main: no benchmark main reads TD_FRONTEND
        "has_frontend": int(layout.frontend is not None), "label_list": cgen.comment(", ".join(labels)),
        "frontend_time": "quantizing and the front end" if layout.frontend else "quantizing",
        "window_note": ([f"The model's front end runs first: {values['frontend_description']}"] if layout.frontend
                        else ["The values are quantized with the model's input scale and zero point (any",
                              "normalisation is inside the model)."]),
        "recording_window_count": len(values["recording_rows"]),
    })
    values["quantize_code"] = env.get_template(
        "library/quantize_frontend.c.j2" if layout.frontend else "library/quantize_plain.c.j2").render(**values)
    notes += values["recording_notes"]
    values.update(_slot_values(values, prepared, engine, framework, arena_bytes, board, kind, options, env))
    private = dict(engine.library_files(prepared, values, env))
    if options.model_partition:
        private.update(copied_firmware((*SLOT_FIRMWARE, *values["slot_platform"]), folder=""))
        private["td_contract.c"] = env.get_template("common/td_contract.c.j2").render(**values)
        private[f"{name}_update.c"] = env.get_template("library/update.c.j2").render(**values)
    if layout.frontend is not None:
        private.update(frontend_sources(layout.frontend, (layout.steps, layout.channels)))
    private["td_board.h"] = env.get_template("common/td_board.h.j2").render(**values)
    private["td_board.c"] = env.get_template("common/td_board.c.j2").render(**values)
    clock_name = "td_clock" + (".cpp" if kind.clock.endswith(".cpp.j2") else ".c")
    private[clock_name] = env.get_template(kind.clock).render(**values)
    private[f"{name}.c"] = env.get_template("library/library.c.j2").render(**values)
    symbols_h = f"{name}_symbols.h"
    found = sorted({m.group(1) for text in private.values() for m in _GLOBAL.finditer(text)})
    private = {file: (_with_prefix(text, symbols_h) if file.endswith((".c", ".cc", ".cpp")) else text)
               for file, text in private.items()}
    private[symbols_h] = env.get_template("library/symbols.h.j2").render(**values, symbols=found)
    sources = sorted(f for f in private if f.endswith((".c", ".cc", ".cpp")))
    values["sources"] = [f"{kind.source_dir}/{f}" for f in sources]
    files = {f"{kind.source_dir}/{f}": text for f, text in private.items()}
    files[f"{kind.header_dir}/{name}.h"] = env.get_template("library/header.h.j2").render(**values)
    files.update(kind.manifests(values, env))
    if options.model_partition:
        files[partitions.FILE] = partitions.csv(values["partitions"], BANNER)
    files["README.md"] = env.get_template("library/README.md.j2").render(**values, notes=notes)
    summary = {"name": name, "kind": kind.name, "engine": engine.name, "window": [layout.steps, layout.channels],
               "hop": hop, "smoothing": options.smoothing, "labels": labels, "frontend": layout.frontend is not None,
               "arena_bytes": arena_bytes, "header": f"{kind.header_dir}/{name}.h", "notes": notes}
    return files, summary
