"""The C source of a lowered model: td_model.h and td_model.c from templates/cengine/,
with tinydeploy's kernels beside them. Pure: {file name: text}, nothing written."""

from __future__ import annotations

from tinydeploy.codegen.cengine import constants
from tinydeploy.codegen.cengine.constants import kind
from tinydeploy.codegen.cengine.lowering import WORK_ORDER, Array, Lowered
from tinydeploy.codegen.templating import copied_firmware, environment

# Kernels the generated code instantiates once per layer (td_kernels_inline.h), so the
# compiler folds each layer's sizes into the code: most of the MACs are in these.
SPECIALIZED = ("td_conv_2d", "td_depthwise_conv_2d", "td_max_pool_2d", "td_add_s8", "td_fully_connected_s8")
KERNEL_FILES = ("td_kernels.h", "td_kernels_inline.h", "td_kernels.c")


def _array_rows(array: Array, per_row: int = 16) -> list[str]:
    if array.ctype == "td_requant":
        return ["{" + ", ".join(str(int(v)) for v in row) + "}," for row in array.values]
    flat = [str(int(v)) for v in array.values.reshape(-1)]
    return [", ".join(flat[i:i + per_row]) + "," for i in range(0, len(flat), per_row)]


# The code of a firmware whose constants are in a model slot (render --model-partition): they
# are read from the block bound at setup (td_model_bind), each layer's parameters built where
# the layer runs, its shapes still constants the compiler folds in.
SLOT_DECLARATIONS = [
    "/* The C engine's constants, in the running model slot (cengine/constants.py's layout). */",
    "static const uint8_t *td_constants;",
    "#define TD_CONSTANT(type, offset) (*(const type *)(const void *)(td_constants + (offset)))",
    "#define TD_CONSTANTS(type, offset) ((const type *)(const void *)(td_constants + (offset)))",
    "",
    "int td_model_bind(const uint8_t *constants, uint32_t bytes) {",
    "  if (constants == NULL || bytes != TD_MODEL_CONSTANTS_BYTES || ((uintptr_t)constants & 15u) != 0) return -1;",
    "  td_constants = constants;",
    "  return 0;",
    "}",
]
SLOT_HEADER = [
    "/* The constants' block (a model image's, after its model), read in place: td_model_bind",
    " * takes it (16-byte aligned, exactly these bytes; else -1) before the first td_model_invoke,",
    " * which returns -1 until then. */",
    "#define TD_MODEL_CONSTANTS_BYTES {bytes}",
    "int td_model_bind(const uint8_t *constants, uint32_t bytes);",
]
# A field's C type where a constant read as int32 is narrowed (td_pad.value).
NARROW = {"value": "int8_t"}


def _slot_initializer(call, index: int, offsets: dict) -> list[str]:
    """The designators of call's parameters, as a C initializer that reads its constants from the slot."""
    arrays = {array.name: array for array in call.arrays}
    parts = []
    for name, value in call.fields:
        what = kind(call, name, value)
        if what == "array":
            parts.append(f".{name} = TD_CONSTANTS({arrays[value].ctype}, {offsets[(index, name)]})")
        elif what == "requant":
            parts.append(f".{name} = TD_CONSTANT(td_requant, {offsets[(index, name)]})")
        elif what == "numeric":
            read = f"TD_CONSTANT(int32_t, {offsets[(index, name)]})"
            parts.append(f".{name} = ({NARROW[name]}){read}" if name in NARROW else f".{name} = {read}")
        else:
            parts.append(f".{name} = {value}")
    return parts


def source_values(lowered: Lowered, banner: str, constants_in_slot: bool = False) -> dict:
    """The values the td_model.c / td_model.h templates substitute. constants_in_slot: the
    constants are read from a model slot's block (cengine.constants), not compiled in."""
    model, plan = lowered.model, lowered.plan
    packed = constants.pack(lowered) if constants_in_slot else None
    arrays, params, steps, functions = [], [], [], []
    for index, call in enumerate(lowered.calls):
        if not constants_in_slot:
            for array in call.arrays:
                arrays.append({"name": array.name, "ctype": array.ctype, "length": len(array.values),
                               "rows": _array_rows(array)})
        src = [f"arena.bytes + {plan.offsets[t]}" for t in call.inputs]
        dst = f"arena.bytes + {plan.offsets[call.output]}"
        tensor = model.tensors[call.output]
        comment = f"{call.op.index}: {call.op.name} -> {'x'.join(map(str, tensor.shape))}"
        if call.view:
            if plan.shares(call.inputs[0], call.output):
                steps.append({"comment": comment + " (a view: no code)", "lines": []})
            else:
                steps.append({"comment": comment, "lines": [f"td_copy({src[0]}, {dst}, {tensor.nbytes});"]})
            continue
        symbol = f"op{call.op.index}"
        local = []
        if constants_in_slot:  # built where it runs: its shapes are constants, its numbers read from the slot
            local = [f"const {call.struct} {symbol} = {{",
                     *[f"    {part}," for part in _slot_initializer(call, index, packed.offsets)], "};"]
        else:
            params.append({"struct": call.struct, "name": symbol, "fields": call.fields})
        args = src + [dst]
        if call.kernel == "td_conv_2d":
            args.append(f"arena.bytes + {plan.scratch[index]}" if call.scratch else "NULL")
        if call.kernel in SPECIALIZED:  # its own copy of the kernel, with this layer's constants folded in
            name = f"layer{call.op.index}"
            functions.append({"name": name, "lines": local + [f"{call.kernel}_inline(&{symbol}, {', '.join(args)});"]})
            steps.append({"comment": comment, "lines": [f"{name}();"]})
        else:
            run = f"{call.kernel}(&{symbol}, {', '.join(args)});"
            steps.append({"comment": comment, "lines": ["{", *["  " + line for line in local], "  " + run, "}"]
                          if local else [run]})
    x, y = model.tensors[lowered.input], model.tensors[lowered.output]
    return {
        "banner": banner, "sha256": model.sha256, "arrays": arrays, "params": params, "steps": steps,
        "functions": functions, "layers": len(steps),
        "arena_bytes": plan.size, "input_offset": plan.offsets[lowered.input], "input_bytes": x.nbytes,
        "output_offset": plan.offsets[lowered.output], "output_bytes": y.nbytes,
        "lower_bound": lowered.lower_bound, "macs": lowered.macs,
        # the order of work the plan assumes, checked against the kernels' when td_model.c compiles
        "work_order": [{"field": name, "macro": macro, "value": value} for name, macro, value in WORK_ORDER.c_checks()],
        "slot_declarations": SLOT_DECLARATIONS if constants_in_slot else [],
        "slot_header": [line.format(bytes=packed.size) for line in SLOT_HEADER] if constants_in_slot else [],
        # unbound (no slot ran its setup), the model does not run
        "invoke_guard": ["if (td_constants == NULL) return -1;"] if constants_in_slot else [],
    }


def render_sources(lowered: Lowered, banner: str, constants_in_slot: bool = False) -> dict[str, str]:
    """{file name: text} of the model's C sources: td_model.h, td_model.c and the kernels."""
    env = environment()
    values = source_values(lowered, banner, constants_in_slot)
    files = {name: env.get_template(f"cengine/{name}.j2").render(**values) for name in ("td_model.h", "td_model.c")}
    files.update(copied_firmware(KERNEL_FILES, folder=""))
    return files
