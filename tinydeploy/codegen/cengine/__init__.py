"""The C engine: an int8 model as plain C99 calls of tinydeploy's kernels, with every
activation planned statically in one arena, bit-identical to TFLite's reference kernels.

- ``arithmetic``: TFLite's fixed-point arithmetic (multipliers, shifts, activation ranges).
- ``lowering``: operators -> kernel calls with fixed parameters, and the static memory plan.
- ``source``: the lowered model -> td_model.h / td_model.c (pure: file texts).
- ``host``: the generated C compiled with the host compiler, for tests and benchmarks.
"""

from tinydeploy.codegen.cengine.arithmetic import activation_range, quantize_multiplier, requant_fields, tflite_round
from tinydeploy.codegen.cengine.host import HostModel
from tinydeploy.codegen.cengine.lowering import ACC_LIMIT, ENGINE_OPS, Lowered, Unsupported, lower
from tinydeploy.codegen.cengine.source import KERNEL_FILES, render_sources, source_values

__all__ = ["ACC_LIMIT", "ENGINE_OPS", "KERNEL_FILES", "HostModel", "Lowered", "Unsupported", "activation_range",
           "lower", "quantize_multiplier", "render_sources", "requant_fields", "source_values", "tflite_round"]
