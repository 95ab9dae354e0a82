"""`tinydeploy package`: a model -> a model image (tinydeploy.core.image) for a flash slot, and
the contract a rendered firmware publishes for such images. Pure: bytes and dicts, no disk."""

from __future__ import annotations

from tinydeploy.codegen import cengine
from tinydeploy.codegen.cengine import constants
from tinydeploy.core import image
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import Model
from tinydeploy.costs import figures
from tinydeploy.runtime import tflm


def tensor_spec(tensor) -> image.TensorSpec:
    q = tensor.quantization
    return image.TensorSpec(tuple(int(d) for d in tensor.shape), tensor.dtype.lower(),
                            float(q.scales[0]) if q else 1.0, int(q.zero_points[0]) if q else 0)


def _lowered(model: Model):
    try:
        return cengine.lower(model)
    except BadInput:
        return None  # the C engine can't run it: the image carries no plan, TFLM firmware can still take it


def constants_bytes(lowered) -> int:
    """The size of the C engine's constants in a lowered model's image."""
    return constants.pack(lowered).size


def header(model: Model, version: str, measured: tflm.ArenaMeasurement | None = None) -> image.Header:
    """The image header for an int8 model: its ops, arena per kernel library (costs.figures),
    I/O, labels and, where the C engine lowers it, its plan's hash and arena."""
    return _header(model, version, measured, _lowered(model))


def _header(model: Model, version: str, measured: tflm.ArenaMeasurement | None, lowered) -> image.Header:
    image.check_version(version)
    if not model.is_int8:
        raise BadInput(f"{model.path}: {model.int8_problem}; an image holds an int8 model, as the firmware runs")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise BadInput(f"{model.path}: {len(model.inputs)} inputs and {len(model.outputs)} outputs; the firmware "
                       "feeds one input and reports one output")
    arena = {}
    if not tflm.unsupported_ops(model):
        arena = figures.tflm_arena_by_library(model, measured or tflm.measure_arena(model))
    return image.Header(
        version=version, model_sha256=model.sha256, ops=tuple(sorted({op.name for op in model.all_operators})),
        arena=arena, input=tensor_spec(model.input_tensors[0]), output=tensor_spec(model.output_tensors[0]),
        labels=model.labels or (), plan_sha256=constants.plan_sha256(lowered) if lowered else None,
        c_arena_bytes=figures.c_arena(lowered).arena_bytes if lowered else None,
        extra={"model_bytes": model.size_bytes})


def package(model: Model, version: str, measured: tflm.ArenaMeasurement | None = None) -> bytes:
    """The model image's bytes (tinydeploy.core.image.pack), with the C engine's constants
    where the C engine runs the model, so that a C-engine firmware with model slots takes it."""
    lowered = _lowered(model)
    return image.pack(_header(model, version, measured, lowered), model.data,
                      constants.pack(lowered).data if lowered else b"")


def contract(model: Model, engine: str, arena_bytes: int, kernels: str | None, lowered=None) -> dict:
    """The contract of a firmware rendered for model: it registers exactly the model's operators,
    has arena_bytes of arena with these kernels, and the model's input and output; an engine
    whose code is the plan (the C engine, which gives its lowered model) also fixes the plan's hash."""
    return image.firmware_contract(engine, {op.name for op in model.all_operators}, arena_bytes, kernels,
                                   tensor_spec(model.input_tensors[0]), tensor_spec(model.output_tensors[0]),
                                   constants.plan_sha256(lowered) if lowered else None)
