"""`tinydeploy render`: an int8 model + a board -> a PlatformIO firmware project.

``render`` is pure: it returns ``{relative path: text}`` and touches no disk,
toolchain or port. Values are prepared here; the Jinja templates in
templates/ only loop and substitute. ``tinydeploy.project`` writes the files.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from tinydeploy import __version__, arena, cgen, kernels, protocol, tflm
from tinydeploy.boards import ENGINES, Board
from tinydeploy.errors import BadInput
from tinydeploy.model import Model
from tinydeploy.manifest import PROJECT_FILE, project_file
from tinydeploy.templating import BANNER, copied_firmware, environment

FRAMEWORKS = ("espidf", "arduino")
ESP_TFLITE_MICRO = ">=1.3.7"  # earlier versions could send every CONV_2D down the slow reference path
ARDUINO_TFLM_LIBRARY = "spaziochirale/Chirale_TensorFLowLite"
SETUP_ERROR_BYTES = 192  # model_runner.cc's buffer for a setup error (with its NUL)
# The info line is the info format with its two %s filled in: arena_used_bytes (at most 20
# digits) and setup_error (null, or the error quoted). Filled, it must fit the firmware's info
# buffer (TD_INFO_SIZE bytes with the NUL), or the host would read a cut JSON line.
INFO_LIMIT = protocol.INFO_SIZE - 1 - 20 - (SETUP_ERROR_BYTES + 1) + len("%s%s")
RX_BUFFER_BYTES = 4096  # the host streams the next validation sample while one inference runs


@dataclass(frozen=True)
class RenderOptions:
    framework: str = "espidf"
    arena_margin_percent: float = 10.0
    labels: tuple[str, ...] = ()
    engine: str = "tflm"


def arena_size(need: int, margin_percent: float) -> int:
    """The firmware's arena: what the board needs plus the margin, rounded up to 16 bytes."""
    return int(math.ceil(need * (1 + margin_percent / 100) / 16) * 16)


def check_deployable(model: Model) -> None:
    """Raise BadInput unless the model is full int8 with only operators TFLM has."""
    problems = []
    if not model.is_int8:
        problems.append("float model: run `tinydeploy optimize`, or give a fully int8-quantized model")
    missing = tflm.unsupported_ops(model)
    if missing:
        problems.append(f"ops TFLM does not support: {', '.join(missing)}. "
                        f"Supported: {', '.join(sorted(tflm.RESOLVER_METHODS))}")
    if problems:
        raise BadInput(f"{model.path}: " + "; ".join(problems))


def _quant(tensor) -> tuple[float, int]:
    q = tensor.quantization
    return (q.scales[0], q.zero_points[0]) if q else (1.0, 0)


def _info_format(model: Model, board: Board, framework: str, arena: int, engine: str) -> str:
    """The info JSON, with two %s for what only the board knows: arena_used_bytes (a number,
    or null when the model could not be set up) and setup_error (null, or a JSON string)."""
    def io(tensor):
        scale, zero = _quant(tensor)
        return {"shape": list(tensor.shape), "dtype": tensor.dtype.lower(), "scale": scale, "zero_point": zero}

    info = {"arena_bytes": arena, "model_sha256": model.sha256, "model_bytes": model.size_bytes,
            "input": io(model.input_tensors[0]), "output": io(model.output_tensors[0]),
            "board": board.name, "cpu_mhz": board.cpu_mhz, "engine": engine, "timer": board.timer}
    if board.toolchain is None:
        info["framework"] = framework
    if engine == "tflm":
        info["tflm"] = f"esp-tflite-micro{ESP_TFLITE_MICRO}" if framework == "espidf" else ARDUINO_TFLM_LIBRARY
        info["kernels"] = board.tflm_kernels(framework)
    info["tinydeploy"] = __version__
    text = ('{"arena_used_bytes":%s,"setup_error":%s,'
            + json.dumps(info, separators=(",", ":"))[1:].replace("%", "%%"))
    if len(text) > INFO_LIMIT:
        raise BadInput(f"the device info line would be {len(text)} characters (limit {INFO_LIMIT}: the firmware's "
                       f"info buffer is {protocol.INFO_SIZE} bytes, with room for a setup error)")
    return text


def _common_values(model: Model, board: Board, options: RenderOptions, model_name: str) -> dict:
    return {
        "banner": BANNER, "board": board, "framework": options.framework,
        "model_name": cgen.comment(model_name),  # for comments and the README: user text, made inert
        "project_name": cgen.identifier("tinydeploy_" + re.sub(r"\W", "_", board.name, flags=re.ASCII)),
        "sha256": model.sha256, "model_bytes": model.size_bytes,
        "device_name": cgen.string_literal(f"tinydeploy-{board.name}"),
        "model_name_literal": cgen.string_literal(f"{model_name} {model.sha256[:12]}"),
        "baud": board.baud, "upload_speed": board.fast_baud, "env_name": board.name, "dir_hint": "DIR",
        "op_names": ", ".join(sorted({op.name for op in model.all_operators})),
    }


def _check_options(model: Model, board: Board, options: RenderOptions) -> None:
    if options.engine not in ENGINES:
        raise BadInput(f"unknown engine '{options.engine}'. Engines: {', '.join(ENGINES)}")
    if options.engine not in board.engines:
        raise BadInput(f"{board.name} runs the {' and '.join(board.engines)} engine only; "
                       f"render with --engine {board.engines[0]}")
    if options.framework not in FRAMEWORKS:
        raise BadInput(f"unknown framework '{options.framework}'. Frameworks: {', '.join(FRAMEWORKS)}")
    if options.engine == "c" and board.toolchain is None and options.framework != "espidf":
        raise BadInput("--engine c renders ESP-IDF projects; use --framework espidf")
    if options.engine == "c" and options.labels:
        raise BadInput("--labels: the C engine's firmware reports class indices, not names; "
                       "drop --labels, or render with --engine tflm")
    if not 0 <= options.arena_margin_percent <= 200:
        raise BadInput(f"--arena-margin must be 0..200 percent, got {options.arena_margin_percent}")
    outputs = model.output_tensors[0].elements
    if options.labels and len(options.labels) != outputs:
        raise BadInput(f"{len(options.labels)} labels given but the model has {outputs} outputs")


def render(model: Model, board: Board, measured: tflm.ArenaMeasurement | None,
           options: RenderOptions = RenderOptions(), model_name: str = "model") -> dict[str, str]:
    """Render the firmware project for a model on a board.

    Args:
        model: a full-int8 model whose operators the chosen engine supports.
        board: the board profile.
        measured: the model's TFLM arena as the host measures it (tinydeploy.tflm); required
            for --engine tflm, where the board's arena is derived from it (tinydeploy.arena),
            and shown for comparison with --engine c.
        options: engine, framework, arena margin and class labels.
        model_name: a short name for messages and the project README.

    Returns:
        {relative path: file text}.

    Raises:
        BadInput: float model, unsupported ops, an arena over the board's budget,
            an unknown engine or framework, or a label count that doesn't match the outputs.
    """
    _check_options(model, board, options)
    if options.engine == "c":
        return _render_c(model, board, measured, options, model_name)
    check_deployable(model)
    if measured is None:
        raise BadInput("the TFLM engine needs the measured arena")
    framework = options.framework
    need = arena.for_board(model, measured, board, framework)
    arena_bytes = arena_size(need.arena_bytes, options.arena_margin_percent)
    budget = board.arena_budget_kb * 1024
    if arena_bytes > budget:
        raise BadInput(f"the arena needs {arena_bytes} bytes ({need.arena_bytes} with {need.kernels} kernels + "
                       f"{options.arena_margin_percent:g}% margin) but {board.name} has {budget} bytes of internal "
                       "RAM for it")
    in_scale, in_zero = _quant(model.input_tensors[0])
    out_scale, out_zero = _quant(model.output_tensors[0])
    ops = [{"name": name, "method": tflm.RESOLVER_METHODS[name]}
           for name in sorted({op.name for op in model.all_operators})]
    library = kernels.library(need.kernels)
    values = _common_values(model, board, options, model_name)
    values.update({
        "sha256_literal": cgen.string_literal(model.sha256), "rows": cgen.byte_rows(model.data),
        "input_scale": cgen.float_literal(in_scale), "input_zero_point": in_zero,
        "output_scale": cgen.float_literal(out_scale), "output_zero_point": out_zero,
        "input_bytes": model.input_tensors[0].nbytes, "output_bytes": model.output_tensors[0].nbytes,
        "labels": list(options.labels), "label_literals": [cgen.string_literal(x) for x in options.labels],
        "ops": ops, "op_names": ", ".join(op["name"] for op in ops),
        "arena_size": arena_bytes, "measured_arena": measured.arena_bytes,
        "margin_percent": f"{options.arena_margin_percent:g}",
        "arena_note": (f"{library.description}: {need.arena_bytes} bytes = head {need.head_bytes} (activations "
                       f"and {need.scratch_bytes} bytes of kernel scratch, as TFLM plans them) + tail "
                       f"{need.tail_bytes} (32-bit); plus {options.arena_margin_percent:g}% margin, rounded up "
                       "to 16."),
        "info_format": cgen.string_literal(_info_format(model, board, framework, arena_bytes, "tflm")),
        "f_cpu": f"{board.cpu_mhz * 1_000_000}L",
        "runtime_note": ("ESP-IDF, Espressif's esp-tflite-micro with the ESP-NN optimized kernels"
                         if framework == "espidf" else
                         f"Arduino, {ARDUINO_TFLM_LIBRARY}: current TFLM API but no ESP-NN, so it is slower"),
        "esp_tflite_micro": ESP_TFLITE_MICRO,
        "sdkconfig": _sdkconfig(board),
        "rx_buffer_bytes": RX_BUFFER_BYTES, "setup_error_bytes": SETUP_ERROR_BYTES,
        # Arduino: the library's log goes to __wrap_DebugLog (main.cpp), not into the protocol stream.
        "extra": ([("lib_deps", ARDUINO_TFLM_LIBRARY), ("build_flags", "-Wl,--wrap=DebugLog")]
                  if framework == "arduino" else []),
    })
    env = environment()
    sources = {"src/model_data.h": "common/model_data.h.j2", "src/model_data.cc": "common/model_data.cc.j2",
               "src/model_runner.h": "common/model_runner.h.j2", "src/model_runner.cc": "common/model_runner.cc.j2",
               "src/td_board.h": "common/td_board.h.j2", "platformio.ini": "common/platformio.ini.j2",
               "README.md": "common/README.md.j2"}
    if framework == "espidf":
        sources.update({"src/main.cc": "espidf/main.cc.j2", "CMakeLists.txt": "espidf/CMakeLists.txt.j2",
                        "src/idf_component.yml": "espidf/idf_component.yml.j2",
                        "sdkconfig.defaults": "espidf/sdkconfig.defaults.j2"})
        values["sources"] = ["main.cc", "model_data.cc", "model_runner.cc", "td_protocol.c"]
        sources["src/CMakeLists.txt"] = "espidf/src_CMakeLists.txt.j2"
    else:
        sources["src/main.cpp"] = "arduino/main.cpp.j2"
    files = {path: env.get_template(template).render(**values) for path, template in sources.items()}
    files.update(copied_firmware(("td_protocol.h", "td_protocol.c")))
    files[PROJECT_FILE] = project_file(BANNER, board, options.engine, options.framework, model.sha256, arena_bytes)
    return files


def _sdkconfig(board: Board) -> list[str]:
    # No console baud key: Kconfig drops CONFIG_ESP_CONSOLE_UART_BAUDRATE unless a custom console
    # UART is chosen; the firmware sets UART0's rate itself.
    return [f"CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ_{board.cpu_mhz}=y",
            "CONFIG_ESP_MAIN_TASK_STACK_SIZE=8192",
            "CONFIG_ESP_TASK_WDT_CHECK_IDLE_TASK_CPU0=n"]


def _render_c(model: Model, board: Board, measured: tflm.ArenaMeasurement | None, options: RenderOptions,
              model_name: str) -> dict[str, str]:
    """The C engine's project: the model as C (tinydeploy.cengine), the protocol firmware, the
    platform layer, and either a PlatformIO/ESP-IDF project or a Makefile for a cross compiler."""
    from tinydeploy import cengine
    lowered = cengine.lower(model)
    arena = lowered.arena_bytes
    budget = board.arena_budget_kb * 1024
    if arena > budget:
        raise BadInput(f"the C engine's arena is {arena} bytes but {board.name} has {budget} bytes of RAM for it")
    values = _common_values(model, board, options, model_name)
    values.update({
        "arena_bytes": arena, "lower_bound": lowered.lower_bound, "weight_bytes": lowered.weight_bytes,
        "tflm_arena": f"{measured.arena_bytes} bytes" if measured else "not measured",
        "info_format": cgen.string_literal(_info_format(model, board, options.framework, arena, "c")),
        "timer_note": ("instructions retired (minstret), not microseconds" if board.timer == "instructions"
                       else "microseconds"),
    })
    env = environment()
    files = {f"src/{name}": text for name, text in cengine.render_sources(lowered, BANNER).items()}
    generic = ["td_main.c", "td_model.c", "td_kernels.c", "td_protocol.c"]
    files.update(copied_firmware(("td_protocol.h", "td_protocol.c", "td_hal.h", "td_main.c")))
    files["src/td_board.h"] = env.get_template("common/td_board.h.j2").render(**values)
    if board.toolchain is not None:
        tc = board.toolchain
        files.update(copied_firmware([*tc["sources"], tc["linker_script"]]))
        values.update({"cc": tc["cc"], "size": tc["size"], "cflags": " ".join(tc["cflags"]),
                       "ldflags": " ".join(tc["ldflags"]), "packages": " ".join(tc["packages"]),
                       "sources": generic + list(tc["sources"]), "linker_script": f"src/{tc['linker_script']}"})
        files["Makefile"] = env.get_template("make/Makefile.j2").render(**values)
        values["how_to"] = ["tinydeploy build DIR"]
        if board.emulated:
            values["how_to"] += ["tinydeploy emulate DIR --port-file DIR/port.txt &",
                                 "tinydeploy bench --port $(cat DIR/port.txt)"]
    else:
        files.update(copied_firmware(("hal_espidf.c",)))
        values.update({"sources": generic + ["hal_espidf.c"], "f_cpu": f"{board.cpu_mhz * 1_000_000}L",
                       "sdkconfig": _sdkconfig(board), "extra": []})
        for path, template in {"platformio.ini": "common/platformio.ini.j2",
                               "CMakeLists.txt": "espidf/CMakeLists.txt.j2",
                               "sdkconfig.defaults": "espidf/sdkconfig.defaults.j2",
                               "src/CMakeLists.txt": "cengine/src_CMakeLists.txt.j2"}.items():
            files[path] = env.get_template(template).render(**values)
        values["how_to"] = ["pio run -d DIR", "pio run -d DIR -t upload --upload-port PORT",
                            "tinydeploy bench --port PORT"]
    files["README.md"] = env.get_template("cengine/README.md.j2").render(**values)
    files[PROJECT_FILE] = project_file(BANNER, board, options.engine, options.framework, model.sha256, arena)
    return files


def read_labels(path: str | Path) -> tuple[str, ...]:
    """Class labels from a text file (one per line) or a JSON file with a "labels" list
    (such as optimize's report.json). Labels are text or numbers, one line each."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{p}: no such labels file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{p}: the labels file is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if p.suffix != ".json":
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    expected = f"{p}: expected a JSON list of labels (text or numbers) or an object with a \"labels\" list"
    try:
        labels = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{expected} ({exc})") from exc
    labels = labels.get("labels") if isinstance(labels, dict) else labels
    if not isinstance(labels, list) or not all(isinstance(x, (str, int, float)) and not isinstance(x, bool)
                                               for x in labels):
        raise BadInput(expected)
    shown = tuple(str(x) for x in labels)
    if any(not x.strip() or "\n" in x or "\r" in x for x in shown):
        raise BadInput(f"{p}: labels must be non-empty single lines")
    return shown
