"""The C source of a lowered model: td_model.h and td_model.c from templates/cengine/,
with tinydeploy's kernels beside them. Pure: {file name: text}, nothing written."""

from __future__ import annotations

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


def source_values(lowered: Lowered, banner: str) -> dict:
    """The values the td_model.c / td_model.h templates substitute."""
    model, plan = lowered.model, lowered.plan
    arrays, params, steps, functions = [], [], [], []
    for index, call in enumerate(lowered.calls):
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
        params.append({"struct": call.struct, "name": symbol, "fields": call.fields})
        args = src + [dst]
        if call.kernel == "td_conv_2d":
            args.append(f"arena.bytes + {plan.scratch[index]}" if call.scratch else "NULL")
        if call.kernel in SPECIALIZED:  # its own copy of the kernel, with this layer's constants folded in
            name = f"layer{call.op.index}"
            functions.append({"name": name, "body": f"{call.kernel}_inline(&{symbol}, {', '.join(args)});"})
            steps.append({"comment": comment, "lines": [f"{name}();"]})
        else:
            steps.append({"comment": comment, "lines": [f"{call.kernel}(&{symbol}, {', '.join(args)});"]})
    x, y = model.tensors[lowered.input], model.tensors[lowered.output]
    return {
        "banner": banner, "sha256": model.sha256, "arrays": arrays, "params": params, "steps": steps,
        "functions": functions, "layers": len(steps),
        "arena_bytes": plan.size, "input_offset": plan.offsets[lowered.input], "input_bytes": x.nbytes,
        "output_offset": plan.offsets[lowered.output], "output_bytes": y.nbytes,
        "lower_bound": lowered.lower_bound, "macs": lowered.macs,
        # the order of work the plan assumes, checked against the kernels' when td_model.c compiles
        "work_order": [{"field": name, "macro": macro, "value": value} for name, macro, value in WORK_ORDER.c_checks()],
    }


def render_sources(lowered: Lowered, banner: str) -> dict[str, str]:
    """{file name: text} of the model's C sources: td_model.h, td_model.c and the kernels."""
    env = environment()
    values = source_values(lowered, banner)
    files = {name: env.get_template(f"cengine/{name}.j2").render(**values) for name in ("td_model.h", "td_model.c")}
    files.update(copied_firmware(KERNEL_FILES, folder=""))
    return files
