"""The C source of a lowered model: td_model.h and td_model.c from templates/cengine/,
with tinydeploy's kernels beside them. Pure: {file name: text}, nothing written."""

from __future__ import annotations

from dataclasses import replace

from tinydeploy.codegen.cengine import constants
from tinydeploy.codegen.cengine.constants import kind
from tinydeploy.codegen.cengine.lowering import INPUT, OUTPUT, WORK_ORDER, Array, Call, Lowered
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


def _fused_lines(call: Call, input_offset: int, output_offset: int, scratch: int, parameters, functions,
                 first_layer: int) -> list[str]:
    """The lines of a row-fused call (lowering.fuse_rows), step by step of its schedule: a row
    buffer's kept rows moved to its start, or a part run on a band, timed for its layer (its
    parts are layers first_layer on). Each band shape of a part is a function of its own, with
    that shape's constants folded in."""
    windowed = [part for part in call.parts if not part.view]
    layer_of = [first_layer + i for i, part in enumerate(call.parts) if not part.view]
    fusion = call.fusion
    buffers = [f"arena.bytes + {scratch + offset}" for offset in fusion.buffers]
    functions_of: dict[tuple, str] = {}

    def band_function(index: int, shape: tuple) -> str:
        if (index, shape) not in functions_of:
            part = windowed[index]
            suffix = f"rows{sum(1 for k in functions_of if k[0] == index)}"
            name, symbol = f"layer{part.op.index}_{suffix}", f"op{part.op.index}_{suffix}"
            banded = {field: str(value) for field, value in shape}
            local = parameters(part, symbol, [(k, banded.get(k, v)) for k, v in part.fields])
            args = ["input", "output"]
            if part.kernel == "td_conv_2d":
                args.append(f"arena.bytes + {scratch + fusion.scratches[index]}" if part.scratch else "NULL")
            run = f"{part.kernel}_inline" if part.kernel in SPECIALIZED else part.kernel
            functions.append({"name": name, "attribute": "TD_BAND", "params": "const int8_t *input, int8_t *output",
                              "lines": local + [f"{run}(&{symbol}, {', '.join(args)});"]})
            functions_of[(index, shape)] = name
        return functions_of[(index, shape)]

    where = {INPUT: f"arena.bytes + {input_offset}", OUTPUT: f"arena.bytes + {output_offset}"}
    lines = []
    for step in fusion.schedule:
        if step.part is None:
            lines.append(f"td_copy({buffers[step.target]} + {step.source_offset}, {buffers[step.target]}, {step.size});")
        else:
            source = where.get(step.source) or buffers[step.source]
            target = where.get(step.target) or buffers[step.target]
            lines.append(f"TD_TIMED({layer_of[step.part]}, {band_function(step.part, step.shape)}"
                         f"({source} + {step.source_offset}, {target} + {step.target_offset}));")
    return lines


def source_values(lowered: Lowered, banner: str, constants_in_slot: bool = False) -> dict:
    """The values the td_model.c / td_model.h templates substitute. constants_in_slot: the
    constants are read from a model slot's block (cengine.constants), not compiled in."""
    model, plan = lowered.model, lowered.plan
    packed = constants.pack(lowered) if constants_in_slot else None
    arrays, params, steps, functions = [], [], [], []
    flat = {id(member): i for i, member in enumerate(lowered.members)}  # constants.pack's index

    def parameters(call: Call, symbol: str, fields: list) -> list[str]:
        """call's struct as `symbol`: a static constant (declared once, in params), or built where it
        runs from the slot (the lines returned)."""
        if constants_in_slot:  # built where it runs: its shapes are constants, its numbers read from the slot
            shaped = replace(call, fields=fields)
            return [f"const {call.struct} {symbol} = {{",
                    *[f"    {part}," for part in _slot_initializer(shaped, flat[id(call)], packed.offsets)], "};"]
        params.append({"struct": call.struct, "name": symbol, "fields": fields})
        return []

    layers = 0  # the layers timed so far: a row-fused call's parts are each one
    for index, call in enumerate(lowered.calls):
        if not constants_in_slot:
            for array in call.arrays:
                arrays.append({"name": array.name, "ctype": array.ctype, "length": len(array.values),
                               "rows": _array_rows(array)})
        src = [f"arena.bytes + {plan.offsets[t]}" for t in call.inputs]
        dst = f"arena.bytes + {plan.offsets[call.output]}"
        tensor = model.tensors[call.output]
        comment = f"{call.op.index}: {call.op.name} -> {'x'.join(map(str, tensor.shape))}"
        if call.parts:
            names = " -> ".join(f"{part.op.index}: {part.op.name}" for part in call.parts if not part.view)
            steps.append({"comment": f"{names} -> {'x'.join(map(str, tensor.shape))}, row-fused: "
                                     f"{call.fusion.rows} output rows a band, {call.scratch} bytes of row "
                                     f"buffers and scratch",
                          "lines": _fused_lines(call, plan.offsets[call.inputs[0]], plan.offsets[call.output],
                                                plan.scratch[index], parameters, functions, layers),
                          "mark": f"TD_MARK_FUSED({layers}, {len(call.parts)})"})
            layers += len(call.parts)
            continue
        layers += 1
        mark = f"TD_MARK({layers})"
        if call.view:
            if plan.shares(call.inputs[0], call.output):
                steps.append({"comment": comment + " (a view: no code)", "lines": [], "mark": mark})
            else:
                steps.append({"comment": comment, "lines": [f"td_copy({src[0]}, {dst}, {tensor.nbytes});"],
                              "mark": mark})
            continue
        symbol = f"op{call.op.index}"
        local = parameters(call, symbol, call.fields)
        args = src + [dst]
        if call.kernel == "td_conv_2d":
            args.append(f"arena.bytes + {plan.scratch[index]}" if call.scratch else "NULL")
        if call.kernel in SPECIALIZED:  # its own copy of the kernel, with this layer's constants folded in
            name = f"layer{call.op.index}"
            functions.append({"name": name, "attribute": "TD_NOINLINE", "params": "void",
                              "lines": local + [f"{call.kernel}_inline(&{symbol}, {', '.join(args)});"]})
            steps.append({"comment": comment, "lines": [f"{name}();"], "mark": mark})
        else:
            run = f"{call.kernel}(&{symbol}, {', '.join(args)});"
            steps.append({"comment": comment, "lines": ["{", *["  " + line for line in local], "  " + run, "}"]
                          if local else [run], "mark": mark})
    x, y = model.tensors[lowered.input], model.tensors[lowered.output]
    return {
        "banner": banner, "sha256": model.sha256, "arrays": arrays, "params": params, "steps": steps,
        "functions": functions, "layers": layers, "fused": any(call.parts for call in lowered.calls),
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
