"""The C engine's kernel cost model, measured: every legal variant of a kernel on a generated
grid of layer shapes, run on the emulated RV32 board (instructions exact), written to
tinydeploy/costs/data/cengine_kernels.json, where lowering's choose_variant() reads it.

    .venv/bin/python bench/kernel_grid.py [--points 40] [--seed 3400] [--out FILE]

The grid: depthwise layers over kernel sizes (3x3, 5x5, and the series' 3x1, 5x1, 7x1),
strides 1-2, 4-24 channels, depth multipliers 1-3, SAME and VALID padding and output sides
from 2 to 96, and convolutions with SAME padding (windows over the border: gathered into
scratch or read in place) over the same kernels and strides, 1-16 input and 4-24 output
channels; --points shapes drawn from them, half each (seeded). Each shape is one int8 layer
model (random weights, converted with tinydeploy.optimize.convert), lowered once per legal
variant (tinydeploy.codegen.cengine.lowering.depthwise_variants) with that variant forced, and
run in a -DTD_PROFILE build (bench/rv32_layers.c): the layer's instructions retired.
Needs: gcc-riscv64-unknown-elf, picolibc-riscv64-unknown-elf, qemu-system-misc.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from cengine_unseen import run_on_board  # noqa: E402 - bench/ is the script's folder

OUT = HERE.parent / "tinydeploy" / "costs" / "data" / "cengine_kernels.json"
KERNELS = [(3, 3), (5, 5), (3, 1), (5, 1), (7, 1)]
SIDES = [3, 4, 6, 8, 12, 16, 24]    # square images
ROWS = [8, 16, 32, 64, 96]          # one-column series (kernels k x 1)


def conv_grid() -> list[dict]:
    """Convolutions whose windows reach over the border (SAME padding): gathered or direct."""
    points = []
    for (k_h, k_w), stride, in_c, out_c in itertools.product(KERNELS, (1, 2), (1, 3, 8, 16), (4, 8, 12, 24)):
        sides = [(s, s) for s in SIDES if s >= 4] if k_w > 1 else [(r, 1) for r in ROWS]
        for in_h, in_w in sides:
            points.append({"op": "CONV_2D", "in_h": in_h, "in_w": in_w, "k_h": k_h, "k_w": k_w, "stride": stride,
                           "in_c": in_c, "out_c": out_c, "multiplier": 1, "padding": "same"})
    return points


def grid() -> list[dict]:
    points = []
    for (k_h, k_w), stride, channels, multiplier, padding in itertools.product(
            KERNELS, (1, 2), (4, 8, 12, 24), (1, 2, 3), ("same", "valid")):
        sides = [(s, s) for s in SIDES] if k_w > 1 else [(r, 1) for r in ROWS]
        for in_h, in_w in sides:
            if padding == "valid" and (in_h < k_h + stride or in_w < k_w):
                continue
            points.append({"op": "DEPTHWISE_CONV_2D", "in_h": in_h, "in_w": in_w, "k_h": k_h, "k_w": k_w, "stride": stride,
                           "in_c": channels if multiplier == 1 else max(2, channels // multiplier),
                           "multiplier": multiplier, "padding": padding})
    return points


def layer_model(point: dict, seed: int):
    from tinydeploy.core.model import parse_model
    from tinydeploy.optimize.convert import to_int8_tflite
    from tinydeploy.runtime import _tf
    keras = _tf.keras()
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    shape = (point["in_h"], point["in_w"], point["in_c"])
    inputs = keras.layers.Input(shape)
    stride = (point["stride"], point["stride"] if point["k_w"] > 1 else 1)
    if point["op"] == "CONV_2D":
        outputs = keras.layers.Conv2D(point["out_c"], (point["k_h"], point["k_w"]), strides=stride,
                                      padding=point["padding"], activation="relu")(inputs)
    else:
        outputs = keras.layers.DepthwiseConv2D((point["k_h"], point["k_w"]), strides=stride, padding=point["padding"],
                                               depth_multiplier=point["multiplier"], activation="relu")(inputs)
    model = keras.Model(inputs, outputs)
    model.set_weights([rng.normal(0, 0.4, w.shape).astype(np.float32) for w in model.get_weights()])
    return parse_model(to_int8_tflite(model, rng.normal(0, 1, (32, *shape)).astype(np.float32)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=32, help="grid shapes to measure (default 32)")
    parser.add_argument("--seed", type=int, default=3400)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--resume", action="store_true", help="keep the rows already in --out, measure the rest")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tinydeploy-kernel-grid")
    args = parser.parse_args(argv)
    from tinydeploy.codegen.cengine import lowering
    from tinydeploy.costs.kernels import SHAPE_FEATURES
    rng = np.random.default_rng(args.seed)
    depthwise, convs = grid(), conv_grid()
    # Stratified: the depthwise shapes in turn by (multiplier, output side 4-8 / 12-24 / series),
    # so that a short run still covers every variant's region; two depthwise shapes a convolution.
    strata: dict = {}
    for i in rng.permutation(len(depthwise)):
        point = depthwise[int(i)]
        side = "series" if point["k_w"] == 1 else ("small" if point["in_h"] <= 8 else "large")
        strata.setdefault((point["multiplier"], side), []).append(point)
    order = [group[i] for i in range(max(map(len, strata.values())))
             for _, group in sorted(strata.items()) if i < len(group)]
    dw_points = order[:args.points - args.points // 3]
    conv_points = [convs[int(i)] for i in rng.permutation(len(convs))[:args.points // 3]]
    points = []
    for i, point in enumerate(dw_points):
        points.append(point)
        if i % 2 == 1 and conv_points:
            points.append(conv_points.pop(0))
    points += conv_points
    # resumable: the rows of the points already measured (a point's rows carry its number)
    rows = json.loads(args.out.read_text())["rows"] if args.resume and args.out.is_file() else []
    done = {json.dumps(row["shape"], sort_keys=True) for row in rows}
    chosen, for_memory = lowering.choose_variant, lowering.choose_for_memory
    for n, point in enumerate(points):
        if json.dumps(point, sort_keys=True) in done:
            continue
        model = layer_model(point, args.seed + n)
        for variant in ("quads", "channels", "small", "gather", "direct"):
            lowering.choose_variant = lambda op, shape, legal, rows=None, v=variant: v if v in legal else None
            # the variant as forced, not another that a smaller arena would take
            lowering.choose_for_memory = lambda model, calls: (calls, lowering.plan_memory(model, calls))
            try:
                lowered = lowering.lower(model)
            finally:
                lowering.choose_variant, lowering.choose_for_memory = chosen, for_memory
            call = lowered.calls[0]
            if call.variant != variant:
                continue  # not legal for this shape
            counts, _ = run_on_board(lowered, np.zeros((1, 1)), args.work / "fw", layers=True)
            fields = dict(call.fields)
            shape = lowering.kernel_shape([1, int(fields["out_h"]), int(fields["out_w"]), int(fields["out_c"])],
                                          int(fields.get("depth_multiplier", 1)), int(fields["k_h"]),
                                          int(fields["k_w"]), int(fields["stride_h"]), int(fields["stride_w"]),
                                          int(fields["pad_top"]), int(fields["pad_left"]))
            row = {"op": point["op"], "variant": variant, "shape": point,
                   **{name: getattr(shape, name) for name in SHAPE_FEATURES},
                   "in_c": point["in_c"], "macs": call.macs, "instructions": counts[0]}
            rows.append(row)
            print(f"{n:>3} {row['op'][:9]} {row['variant']:9} out {row['out_h']}x{row['out_w']}x{row['channels']} "
                  f"m{row['multiplier']} in_c {row['in_c']} k{row['k_h']}x{row['k_w']} s{row['stride']} "
                  f"pad{row['padded']}: {row['instructions']:,} = {row['instructions'] / row['macs']:.2f}/MAC",
                  flush=True)
        write(args, rows)
    write(args, rows)
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


def write(args, rows: list[dict]) -> None:
    table = {"method": "bench/kernel_grid.py: single-layer int8 models over a generated grid of shapes, every "
                       "legal variant of the kernel forced in turn, cross-compiled for the qemu-riscv32 board "
                       "(-O2, rv32imc) and run in a -DTD_PROFILE build (bench/rv32_layers.c); instructions is "
                       "the layer's minstret difference under QEMU -icount (exact)",
             "measured": datetime.date.today().isoformat(), "points": args.points, "seed": args.seed,
             "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
