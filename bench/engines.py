"""TFLM against the C engine on the digits demo model and three models of other shapes.

For each model, prints the arena three ways (TFLM measured, the C engine's static plan, the
tensor-level lower bound: the largest sum of live tensors), flash (the flatbuffer, and the
C engine's constants plus code from `size` on the RV32 objects and on the whole firmware),
and the instructions retired per inference on the emulated RV32IMC board, per MAC and per
layer, with a second boot to show the counts repeat exactly. Then a summary against the
goals of issue 17: arena <= 0.75x the tensor-level bound, <= 4.5 instructions per MAC.

The other models (bench/calibrate_board.py's, untrained: neither memory nor instruction
counts depend on the weights): the demo's architecture on 16x16 digits, a wider net with
5x5 kernels and stride 2, and a time-series model (96 steps of 3 axes).
Run after `make demo`: .venv/bin/python bench/engines.py [MODEL.tflite ...]
"""

import subprocess
import sys
import tempfile
from pathlib import Path

from tinydeploy.device import bench, emulate
from tinydeploy.codegen import cengine
from tinydeploy.runtime import tflm
from tinydeploy.core.boards import get_board
from tinydeploy.toolchain.build import build, elf_size
from tinydeploy.core.model import load_model
from tinydeploy.toolchain.project import write_project
from tinydeploy.codegen.render import RenderOptions, render

DEMO = Path("build/demo/optimize/model.tflite")


def object_sizes(project: Path, toolchain: dict) -> dict:
    """text (code + read-only data) of the C engine's own objects: the model and the kernels."""
    flags = [f for f in toolchain["cflags"] if not f.startswith("--specs")]
    sizes = {}
    for name in ("td_model", "td_kernels"):
        obj = project / "build" / f"{name}.o"
        subprocess.run([toolchain["cc"], *flags, "--specs=picolibc.specs", "-c", str(project / "src" / f"{name}.c"),
                        "-I", str(project / "src"), "-o", str(obj)], check=True)
        sizes[name] = elf_size(toolchain["size"], obj)["text"]
    return sizes


def layer_counts(project: Path, board) -> list[int]:
    """Instructions retired by each layer: a -DTD_PROFILE build with bench/rv32_layers.c
    in place of the protocol firmware, run once on the emulator."""
    tc = board.toolchain
    src = project / "src"
    elf = project / "build" / "layers.elf"
    sources = [src / "td_model.c", src / "td_kernels.c", Path(__file__).with_name("rv32_layers.c")] + \
        [src / name for name in tc["sources"]]
    subprocess.run([tc["cc"], *tc["cflags"], "-DTD_PROFILE", "-I", str(src), *map(str, sources), *tc["ldflags"],
                    "-T", str(src / tc["linker_script"]), "-o", str(elf)], check=True)
    command = list(board.emulator["command"]) + ["-serial", "stdio", "-kernel", str(elf)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    counts = []
    try:
        for line in process.stdout:
            if line.startswith("done"):
                break
            if line.startswith("layer "):
                counts.append(int(line.split()[2]))
    finally:
        process.kill()
        process.wait()
    return counts


def boot_and_count(project: Path, out: Path) -> dict:
    with emulate.start(project) as emulator:
        result = bench.bench(emulator.url, out, runs=5, warmup=1, reset=False)
    return result.latency_instructions


def report(model_path: Path) -> dict:
    """Print one model's figures; return its summary row."""
    model = load_model(model_path)
    lowered = cengine.lower(model)
    measurement = tflm.measure_arena(model)
    measured = measurement.arena_bytes
    board = get_board("qemu-riscv32")
    print(f"model {model_path}: {model.size_bytes:,} B flatbuffer, {lowered.macs:,} MACs")
    print("arena:")
    print(f"  TFLM (measured, tflite-micro on this host)  {measured:>8,} B")
    print(f"  C engine (static plan)                      {lowered.arena_bytes:>8,} B  "
          f"= {lowered.arena_bytes / measured:.2f} x TFLM")
    print(f"  lower bound (largest live-tensor sum)       {lowered.lower_bound:>8,} B  "
          f"C engine is {lowered.arena_bytes / lowered.lower_bound:.2f} x it (layers write over input they have read)")
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "fw"
        write_project(render(model, board, measurement, RenderOptions(engine="c"), "demo"), project)
        firmware = build(project)
        objects = object_sizes(project, board.toolchain)
        print("flash:")
        print(f"  model flatbuffer (what TFLM reads)          {model.size_bytes:>8,} B (plus the interpreter)")
        print(f"  C engine: model constants + code (td_model) {objects['td_model']:>8,} B")
        print(f"  C engine: kernels (td_kernels)              {objects['td_kernels']:>8,} B")
        print(f"  whole RV32 firmware text (.text + .rodata)  {firmware.size['text']:>8,} B "
              "(with the protocol and picolibc's printf)")
        first = boot_and_count(project, Path(tmp) / "run1")
        second = boot_and_count(project, Path(tmp) / "run2")
        layers = layer_counts(project, board)
    per_inference = first["median"]
    print("instructions retired on the emulated RV32IMC board (minstret, QEMU -icount):")
    print(f"  per inference  {per_inference:,.0f}  (estimate at 160 MHz, 1 instruction/cycle: "
          f"{per_inference / 160:,.0f} µs)")
    print(f"  per MAC        {per_inference / lowered.macs:.2f}  (requantization, pooling, copies included)")
    print(f"  repeat runs    first boot {first['min']:,}..{first['max']:,}, second boot "
          f"{second['min']:,}..{second['max']:,}: "
          f"{'identical' if first['min'] == first['max'] == second['min'] == second['max'] else 'DIFFERENT'}")
    print("per layer (a -DTD_PROFILE build; the input and output copies are outside the layers):")
    print(f"  {'#':>3} {'op':<18} {'MACs':>8} {'instructions':>13} {'per MAC':>8}")
    for call, count in zip(lowered.members, layers):
        per_mac = f"{count / call.macs:.2f}" if call.macs else ""
        print(f"  {call.op.index:>3} {call.op.name:<18} {call.macs:>8,} {count:>13,} {per_mac:>8}")
    print(f"  layers in all: {sum(layers):,} instructions")
    return {"model": model_path.stem, "arena": lowered.arena_bytes, "bound": lowered.lower_bound,
            "tflm": measured, "per_mac": per_inference / lowered.macs}


def main(paths: list[Path]) -> None:
    from calibrate_board import models  # bench/ is the script's folder
    if not paths:
        if not DEMO.is_file():
            sys.exit(f"{DEMO} not found: run `make demo` first (or pass .tflite files)")
        work = Path(tempfile.mkdtemp(prefix="engines-"))
        paths = [DEMO, *models(work).values()]
    rows = []
    for path in paths:
        rows.append(report(path))
        print()
    print("goals (issue 17): arena <= 0.75 x the tensor-level bound (moonshot 0.6), <= 4.5 instructions per MAC")
    print(f"  {'model':<12} {'arena B':>8} {'bound B':>8} {'x bound':>8} {'x TFLM':>7} {'instr/MAC':>10}")
    for r in rows:
        print(f"  {r['model']:<12} {r['arena']:>8,} {r['bound']:>8,} {r['arena'] / r['bound']:>8.2f} "
              f"{r['arena'] / r['tflm']:>7.2f} {r['per_mac']:>10.2f}")
    arena_met = sum(r["arena"] <= 0.75 * r["bound"] for r in rows)
    compute_met = sum(r["per_mac"] <= 4.5 for r in rows)
    print(f"  arena goal met on {arena_met} of {len(rows)}; instructions goal met on {compute_met} of {len(rows)}")


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
