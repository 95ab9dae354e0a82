"""Engines: what runs the model on the board. A registry of small classes; adding an engine
is adding a class here (and its templates), with no `if engine` anywhere else.

- ``tflm``: the TFLite Micro interpreter with the model's flatbuffer. Its arena is the measured
  TFLM arena with the board's kernel scratch at 32-bit sizes (tinydeploy.costs.arena), plus a margin.
- ``c``: tinydeploy's C engine (tinydeploy.codegen.cengine): the model as C calls of tinydeploy's
  kernels, its activations planned statically in one arena.

Each answers ``check`` (can it run the model?), ``prepare`` (its view of the model),
``arena``, ``files``, ``summary`` and ``describe`` for render, ``cost`` for optimize's choice,
and ``reference`` (the host outputs its firmware must reproduce) for bench's validation.
``cost``, ``arena`` and ``summary`` take their figures from tinydeploy.costs.figures, where
every cost formula lives: an engine class says only which of its functions apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinydeploy.codegen import cengine, cgen
from tinydeploy.costs import figures, kernels
from tinydeploy.costs.figures import Figures
from tinydeploy.runtime import tflm
from tinydeploy.core.boards import Board
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import Model
from tinydeploy.core.names import C, TFLM
from tinydeploy.codegen.templating import copied_firmware

SETUP_ERROR_BYTES = 192  # TD_SETUP_ERROR_BYTES in firmware/td_runner.h: the firmware's buffer for a setup error


def _quant(tensor) -> tuple[float, int]:
    q = tensor.quantization
    return (q.scales[0], q.zero_points[0]) if q else (1.0, 0)


@dataclass
class Prepared:
    """An engine's view of one model: what render, summary and cost need, computed once."""
    model: Model
    measured: tflm.ArenaMeasurement | None = None  # the TFLM arena on the host, where TFLM can load it
    lowered: cengine.Lowered | None = None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


class TflmEngine:
    name = TFLM
    labels = True  # its firmware prints class names
    emulated = False  # it has no build for the emulated board
    reference_basis = "host TFLM interpreter, same int8 inputs"
    needs_tflm = True  # a library export depends on a TFLM library (and builds C++)
    fixed_plan = False  # a model image for it may change the model's layers (within its ops and arena)

    def check(self, model: Model) -> None:
        """Raise BadInput unless the model is full int8 with only operators TFLM has."""
        problems = []
        if not model.is_int8:
            problems.append(f"{model.int8_problem}; run `tinydeploy optimize`, or give a fully int8-quantized model")
        if len(model.inputs) != 1 or len(model.outputs) != 1:  # model_runner feeds input 0, reports output 0
            problems.append(f"{_count(len(model.inputs), 'input')} and {_count(len(model.outputs), 'output')}: "
                            "the firmware feeds one input tensor and reports one output tensor")
        missing = tflm.unsupported_ops(model)
        if missing:
            problems.append(f"ops TFLM does not support: {', '.join(missing)}. "
                            f"Supported: {', '.join(sorted(tflm.RESOLVER_METHODS))}")
        if problems:
            raise BadInput(f"{model.path}: " + "; ".join(problems))

    def prepare(self, model: Model, measured: tflm.ArenaMeasurement | None = None) -> Prepared:
        self.check(model)  # before measuring, so a float or unsupported model fails fast
        return Prepared(model, measured or tflm.measure_arena(model))

    def check_options(self, labels: tuple[str, ...]) -> None:
        pass

    def arena(self, prepared: Prepared, board: Board, framework, margin_percent: float):
        """(the firmware's arena in bytes, what it is made of)."""
        return figures.tflm_firmware_arena(prepared.model, prepared.measured, board, framework.name, margin_percent)

    def info(self, board: Board, framework) -> dict:
        return {"tflm": framework.tflm_library, "kernels": board.tflm_kernels(framework.name)}

    def _model_values(self, prepared: Prepared, values: dict) -> None:
        """Adds what model_data.{h,cc} and model_runner.cc substitute to values (which holds the
        arena, its need and margin, the labels and the model's name)."""
        model, measured = prepared.model, prepared.measured
        arena_bytes, need = values["arena_bytes"], values["arena_need"]
        in_scale, in_zero = _quant(model.input_tensors[0])
        out_scale, out_zero = _quant(model.output_tensors[0])
        ops = [{"name": name, "method": tflm.RESOLVER_METHODS[name]}
               for name in sorted({op.name for op in model.all_operators})]
        margin = values["margin_percent"]
        values.update({
            "sha256_literal": cgen.string_literal(model.sha256), "rows": cgen.byte_rows(model.data),
            "input_scale": cgen.float_literal(in_scale), "input_zero_point": in_zero,
            "output_scale": cgen.float_literal(out_scale), "output_zero_point": out_zero,
            "input_bytes": model.input_tensors[0].nbytes, "output_bytes": model.output_tensors[0].nbytes,
            "ops": ops, "layer_count": len(model.operators), "arena_size": arena_bytes, "measured_arena": measured.arena_bytes,
            "arena_note": (f"{kernels.library(need.kernels).description}: {need.arena_bytes} bytes = head "
                           f"{need.head_bytes} (activations and {need.scratch_bytes} bytes of kernel scratch, as "
                           f"TFLM plans them) + tail {need.tail_bytes} (32-bit); plus {margin}% margin, rounded "
                           "up to 16."),
        })

    def files(self, prepared: Prepared, board: Board, framework, values: dict, env) -> dict[str, str]:
        self._model_values(prepared, values)
        values["runtime_note"] = framework.runtime_note
        build = framework.tflm_files(board)
        values["sources"] = [values["main_source"], "model_data.cc", "model_runner.cc", "td_tflm_runner.cc",
                             "td_board.c", "td_protocol.c", *build.sources, *values["frontend_sources"]]
        templates = {"src/model_data.h": "common/model_data.h.j2", "src/model_data.cc": "common/model_data.cc.j2",
                     "src/model_runner.cc": "common/model_runner.cc.j2", "README.md": "common/README.md.j2",
                     **build.templates}
        files = {path: env.get_template(template).render(**values) for path, template in templates.items()}
        files.update(copied_firmware(("td_protocol.h", "td_protocol.c", "td_hal.h", values["main_source"], "td_runner.h",
                                      "td_tflm_runner.h", "td_tflm_runner.cc", *build.firmware)))
        return files

    def library_files(self, prepared: Prepared, values: dict, env) -> dict[str, str]:
        """The engine's half of a library export (tinydeploy.codegen.library): the model and the
        runner behind td_runner.h, {file name: text}. values as for files(), with no board's."""
        self._model_values(prepared, values)
        templates = {"model_data.h": "common/model_data.h.j2", "model_data.cc": "common/model_data.cc.j2",
                     "model_runner.cc": "common/model_runner.cc.j2"}
        files = {name: env.get_template(template).render(**values) for name, template in templates.items()}
        files.update(copied_firmware(("td_protocol.h", "td_protocol.c", "td_hal.h", "td_runner.h", "td_tflm_runner.h",
                                      "td_tflm_runner.cc"), folder=""))
        return files

    def summary(self, prepared: Prepared, board: Board, framework, margin_percent: float) -> dict:
        arena_bytes, need = self.arena(prepared, board, framework, margin_percent)
        return {"measured_arena_bytes": prepared.measured.arena_bytes, "board_arena": need.to_dict(),
                "arena_bytes": arena_bytes, "arena_margin_percent": margin_percent}

    def describe(self, summary: dict) -> str:
        need = summary["board_arena"]
        return (f"rendered {summary['project']} for {summary['board']} ({summary['framework']}): "
                f"{len(summary['files'])} files, arena {summary['arena_bytes']:,} bytes "
                f"({need['arena_bytes']:,} needed with the {need['kernels']} kernels at 32 bits, "
                f"+ {summary['arena_margin_percent']:g}%; host TFLM measured {summary['measured_arena_bytes']:,}), "
                f"ops {', '.join(summary['ops'])}")

    def cost(self, model: Model, board: Board, measured: tflm.ArenaMeasurement | None = None, **_) -> Figures:
        """Arena as the board needs it, the flatbuffer's size, and the board's latency estimate."""
        self.check(model)
        return figures.tflm(model, measured or tflm.measure_arena(model), board, engine=self.name)

    def reference(self, model: Model, x_int8: np.ndarray) -> np.ndarray:
        return tflm.TflmRunner(model).predict_int8(x_int8)

    def timed_operators(self, model: Model) -> list[int]:
        """The operators the firmware's layers% times, in order: every one of the main graph."""
        return [op.index for op in model.operators]

    def on_device(self, device: dict) -> tuple[str, str]:
        """What a device's info says it runs, and where its arena_used_bytes comes from."""
        return (f"{device.get('framework', '?')}, {device.get('tflm', '?')}",
                f"reported by TFLM on the device ({device.get('kernels', 'kernels not reported')})")


class CEngine:
    name = C
    labels = False  # its firmware reports class indices
    emulated = True  # its firmware runs on the emulated RV32 board, which counts instructions
    reference_basis = "TFLite reference kernels (tf.lite.Interpreter, BUILTIN_REF), same int8 inputs"
    needs_tflm = False  # plain C99, no dependency
    fixed_plan = True  # its code is the plan: a model image for it may change the weights only

    def check(self, model: Model) -> None:
        cengine.lower(model)  # BadInput listing every operator it lacks

    def prepare(self, model: Model, measured: tflm.ArenaMeasurement | None = None) -> Prepared:
        lowered = cengine.lower(model)  # fails fast, listing every operator it lacks
        if measured is None and model.is_int8 and not tflm.unsupported_ops(model):
            measured = tflm.measure_arena(model)  # the TFLM arena, where TFLM runs it, for comparison
        return Prepared(model, measured, lowered)

    def check_options(self, labels: tuple[str, ...]) -> None:
        if labels:
            raise BadInput("--labels: the C engine's firmware reports class indices, not names; "
                           "drop --labels, or render with --engine tflm")

    def arena(self, prepared: Prepared, board: Board, framework, margin_percent: float):
        return figures.c_arena(prepared.lowered).arena_bytes, None  # the static plan: exact, no margin needed

    def info(self, board: Board, framework) -> dict:
        return {}

    def files(self, prepared: Prepared, board: Board, framework, values: dict, env) -> dict[str, str]:
        lowered, measured = prepared.lowered, prepared.measured
        values.update({
            "lower_bound": lowered.lower_bound, "weight_bytes": lowered.weight_bytes,
            "tflm_arena": f"{measured.arena_bytes} bytes" if measured else "not measured",
            "timer_note": ("instructions retired (minstret), not microseconds" if board.timer == "instructions"
                           else "microseconds"),
        })
        build = framework.c_files(board)
        values["sources"] = [values["main_source"], "td_c_runner.c", "td_model.c", "td_kernels.c", "td_protocol.c",
                             "td_board.c", *build.sources, *values["frontend_sources"], *values["slot_sources"]]
        values["how_to"] = build.how_to
        in_slot = bool(values["slot_sources"])  # render --model-partition: the constants come from the slot
        files = {f"src/{name}": text
                 for name, text in cengine.render_sources(lowered, values["banner"], constants_in_slot=in_slot).items()}
        files.update(copied_firmware(("td_protocol.h", "td_protocol.c", "td_hal.h", values["main_source"], "td_runner.h",
                                      "td_c_runner.c", *build.firmware)))
        templates = {**build.templates, "README.md": "cengine/README.md.j2"}
        files.update({path: env.get_template(template).render(**values) for path, template in templates.items()})
        return files

    def library_files(self, prepared: Prepared, values: dict, env) -> dict[str, str]:
        """The engine's half of a library export (tinydeploy.codegen.library): the model as C,
        the kernels and the runner behind td_runner.h, {file name: text}."""
        files = cengine.render_sources(prepared.lowered, values["banner"], constants_in_slot=bool(values["slot_sources"]))
        files.update(copied_firmware(("td_protocol.h", "td_protocol.c", "td_hal.h", "td_runner.h", "td_c_runner.c"),
                                     folder=""))
        return files

    def summary(self, prepared: Prepared, board: Board, framework, margin_percent: float) -> dict:
        lowered = prepared.lowered
        return {"arena_bytes": figures.c_arena(lowered).arena_bytes,
                "tflm_arena_bytes": prepared.measured.arena_bytes if prepared.measured else None,
                "lower_bound_bytes": lowered.lower_bound, "constant_bytes": figures.c_flash(lowered),
                "macs": lowered.macs}

    def describe(self, summary: dict) -> str:
        return (f"rendered {summary['project']} for {summary['board']} (C engine): {len(summary['files'])} files, "
                f"{summary['constant_bytes']:,} bytes of constants, ops {', '.join(summary['ops'])}")

    def cost(self, model: Model, board: Board, measured: tflm.ArenaMeasurement | None = None,
             instructions: int | None = None, fitted: Board | None = None, why_fitted: str = "") -> Figures:
        """Latency: from instructions retired under emulation where given; else the board's own
        estimate where it is the emulated board or was calibrated on C-engine runs; else per-operator
        instruction counts fitted on earlier emulator runs (the fitted board's table)."""
        return figures.c(cengine.lower(model), board, self.name, instructions, fitted, why_fitted)

    def timed_operators(self, model: Model) -> list[int]:
        """The operators the firmware's layers% times, in order: those left after folding (a
        row-fused call's parts each)."""
        return [call.op.index for call in cengine.lower(model).members]

    def reference(self, model: Model, x_int8: np.ndarray) -> np.ndarray:
        from tinydeploy.runtime.evaluate import reference_outputs
        return reference_outputs(model, x_int8).reshape(len(x_int8), -1)

    def on_device(self, device: dict) -> tuple[str, str]:
        return "C engine (no interpreter)", "the C engine's static plan, reported by the device"


ENGINES = {engine.name: engine for engine in (TflmEngine(), CEngine())}


def engine_for(board: Board, name: str | None = None):
    """The engine to render with (the board's first when name is None).

    Raises:
        BadInput: an unknown engine, or one the board doesn't run.
    """
    name = name or board.engines[0]
    if name not in ENGINES:
        raise BadInput(f"unknown engine '{name}'. Engines: {', '.join(ENGINES)}")
    if name not in board.engines:
        raise BadInput(f"{board.name} runs the {' and '.join(board.engines)} engine only; "
                       f"render with --engine {board.engines[0]}")
    return ENGINES[name]
