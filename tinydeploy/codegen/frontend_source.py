"""A front end as C: td_frontend_config.{h,c}, the config struct and tables that
firmware/td_frontend.c runs, with every value computed by tinydeploy.core.frontend's plan.
Pure: {file name: text}, nothing written."""

from __future__ import annotations

import numpy as np

from tinydeploy.codegen import cgen
from tinydeploy.codegen.templating import BANNER, copied_firmware
from tinydeploy.core.frontend import Decimate, Frontend, Normalize, Plan, Spectrum, Stats, log2_table
from tinydeploy.core.errors import BadInput

LIBRARY_FILES = ("td_frontend.h", "td_frontend.c")
_CTYPES = {"int8_t": (-128, 127), "uint8_t": (0, 255), "int16_t": (-32768, 32767), "uint16_t": (0, 65535),
           "int32_t": (-2 ** 31, 2 ** 31 - 1)}


def _array(ctype: str, name: str, values, per_row: int = 16) -> list[str]:
    """A static const C array of integers, checked to fit ctype."""
    flat = [int(v) for v in np.asarray(values).reshape(-1)]
    low, high = _CTYPES[ctype]
    assert flat and all(low <= v <= high for v in flat), f"{name} does not fit {ctype}"
    rows = [", ".join(map(str, flat[i:i + per_row])) + "," for i in range(0, len(flat), per_row)]
    return [f"static const {ctype} {cgen.identifier(name)}[{len(flat)}] = {{", *(f"    {r}" for r in rows), "};", ""]


def _block(plan: Plan, index: int, prefix: str, arrays: list[str]) -> list[str]:
    """The initializer of one td_frontend_block, adding its tables to arrays."""
    stage = plan.stages[index]
    block, k = stage.block, stage.constants
    fields = {"kind": block.c_kind, "steps": stage.in_shape[0]}
    name = f"{prefix}_block{index}"
    if isinstance(block, Normalize):
        fields.update(log_scale=int(block.log_scale), log_offset_q12=k["log_offset_q12"])
    elif isinstance(block, Decimate):
        fields.update(factor=block.factor)
    elif isinstance(block, Spectrum):
        fields.update(frame_length=block.frame_length, log2_length=k["log2_length"], hop=block.hop,
                      frames=k["frames"], bands=block.bands, cepstra=block.cepstra, power_shift=k["power_shift"],
                      relative=int(block.relative), pool=int(block.pool),
                      energy_offset_q12=k["energy_offset_q12"])
        for table, ctype in (("window_q15", "int16_t"), ("cos_q15", "int16_t"), ("band_first", "uint16_t"),
                             ("band_count", "uint16_t"), ("band_offset", "uint16_t"), ("band_weight", "uint16_t"),
                             ("dct_q15", "int16_t")):
            if len(k[table]):
                arrays += _array(ctype, f"{name}_{table}", k[table])
                fields[table] = f"{name}_{table}"
    elif isinstance(block, Stats):
        arrays += _array("uint8_t", f"{name}_stats", k["stat_codes"])
        fields.update(segments=block.segments, segment_length=k["segment_length"], n_stats=len(block.stats),
                      stats=f"{name}_stats")
    body = ", ".join(f".{key} = {value}" for key, value in fields.items())
    return [f"    /* {cgen.comment(block.describe())} */", f"    {{{body}}},"]


def frontend_sources(frontend: Frontend, input_shape, name: str = "td_frontend_cfg", folder: str = "",
                     library: bool = True) -> dict[str, str]:
    """The C of a front end on one window shape.

    Args:
        frontend: the chain; its output quantisation, when set, gives td_frontend_run's
            int8 (without it only td_frontend_features works).
        input_shape: (steps, channels) of the windows the device will give it.
        name: the td_frontend_config's C name; the macros are its upper case.
        folder: prefix of every path (e.g. "src/").
        library: also copy firmware/td_frontend.{h,c}, the code that runs the config.
    Returns:
        {path: text}: td_frontend_config.h, td_frontend_config.c (and the library files).
    """
    try:
        prefix = cgen.identifier(name)
    except ValueError as exc:
        raise BadInput(f"front-end name: {exc}") from None
    plan = frontend.plan(input_shape)
    steps, channels = plan.input_shape
    macro = prefix.upper()
    description = cgen.comment(frontend.describe())
    shape = "x".join(map(str, plan.output_shape))
    out = frontend.output
    inverse = np.float32(1.0 / frontend.input_scale)

    header = [
        f"/* {BANNER}",
        f" * Front end: {description}",
        f" * Input {steps} steps x {channels} channels of int16; features {shape}. */",
        f"#ifndef {macro}_H_",
        f"#define {macro}_H_",
        "",
        '#include "td_frontend.h"',
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        f"#define {macro}_STEPS {steps}",
        f"#define {macro}_CHANNELS {channels}",
        f"#define {macro}_INPUT_SCALE {cgen.float_literal(frontend.input_scale)}",
        f"#define {macro}_OUTPUT_SIZE {plan.output_size}",
    ]
    if out is not None:
        header += [f"#define {macro}_OUTPUT_SCALE {cgen.float_literal(out.scale)}",
                   f"#define {macro}_OUTPUT_ZERO_POINT {out.zero_point}"]
    header += [
        "/* td_frontend_scratch_bytes(); declare the scratch as int32_t[SCRATCH_WORDS] (at least 1) */",
        f"#define {macro}_SCRATCH_BYTES {plan.scratch_bytes}",
        f"#define {macro}_SCRATCH_WORDS {max(1, plan.scratch_bytes // 4)}",
        "",
        f"extern const td_frontend_config {prefix};",
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        "",
        f"#endif /* {macro}_H_ */",
        "",
    ]

    arrays: list[str] = _array("uint16_t", f"{prefix}_log2", log2_table())
    blocks: list[str] = []
    for index in range(len(plan.stages)):
        blocks += _block(plan, index, prefix, arrays)
    if blocks:
        arrays += [f"static const td_frontend_block {prefix}_blocks[{len(plan.stages)}] = {{", *blocks, "};", ""]
    if out is not None:
        arrays += _array("int32_t", f"{prefix}_multiplier", plan.multipliers)
        arrays += _array("int8_t", f"{prefix}_shift", plan.shifts)
    config = {
        "steps": steps, "channels": channels, "inverse_input_scale": cgen.float_literal(inverse),
        "n_blocks": len(plan.stages), "blocks": f"{prefix}_blocks" if blocks else "NULL",
        "log2_table": f"{prefix}_log2", "rows": plan.rows, "cols": plan.cols, "extra_rows": plan.extra_rows,
        "flatten": int(frontend.flatten), "row_scales": len(plan.row_scales), "zero_point": out.zero_point if out is not None else 0,
        "multiplier": f"{prefix}_multiplier" if out is not None else "NULL",
        "shift": f"{prefix}_shift" if out is not None else "NULL", "output_size": plan.output_size,
    }
    source = [
        f"/* {BANNER}",
        f" * Front end: {description} */",
        '#include "td_frontend_config.h"',
        "",
        "#include <stddef.h>",
        "",
        *arrays,
        f"const td_frontend_config {prefix} = {{",
        *(f"    .{key} = {value}," for key, value in config.items()),
        "};",
        "",
    ]
    files = {f"{folder}td_frontend_config.h": "\n".join(header), f"{folder}td_frontend_config.c": "\n".join(source)}
    if library:
        files.update(copied_firmware(LIBRARY_FILES, folder=folder))
    return files
