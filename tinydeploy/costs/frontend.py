"""What a signal front end (tinydeploy.core.frontend) costs on the device: RAM, flash and work.

- **RAM**: the scratch td_frontend_features()/td_frontend_run() take (exact: the C and
  the plan compute the same size, and a test checks the C never writes past it), beside
  the caller's int16 window and int8 features.
- **flash**: the generated tables (exact, the arrays td_frontend_config.c declares), the
  config structs (their ILP32 sizes) and td_frontend.c's code (an estimate: one
  measurement, below).
- **work**: integer operations per window, counted from the loops of td_frontend.c.

A pure function of the front end and the window shape, so it can join the model's arena,
flash and latency figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinydeploy.core.frontend import LOG_TABLE_BITS, Frontend, Normalize, Decimate, Spectrum, Stats

# sizeof(td_frontend_block) and sizeof(td_frontend_config) on ILP32 targets (ESP32, ESP32-C3),
# from riscv64-unknown-elf-gcc 12.2 -march=rv32imc -mabi=ilp32.
BLOCK_STRUCT_BYTES = 96
CONFIG_STRUCT_BYTES = 60
# .text of firmware/td_frontend.c for rv32imc (ESP32-C3's ISA), gcc 12.2 -O2 (-Os: 4,178);
# libgcc's soft-float and 64-bit division helpers, often linked anyway, are not counted.
CODE_BYTES_ESTIMATE = 6180
# Instructions td_frontend_run() retires per counted operation (operations below), measured on
# RV32IMC (riscv64-unknown-elf-gcc 12.2 -O2, QEMU -icount: exact counts) on six front ends: the
# four of docs/frontend.md's table (5.3-5.7), a 128x2 window's 32-point spectrum (6.4) and a
# 1,500-step decimate-and-normalize (2.9); the median, 5.5. At one instruction a cycle it
# estimates cycles on every board (as the C engine's fitted tables do).
CYCLES_PER_OPERATION = 5.5
# td_fe_isqrt runs at most 32 steps; td_fe_log2_q12 six comparisons and a lookup.
SQRT_OPERATIONS = 32
LOG_OPERATIONS = 8


@dataclass(frozen=True)
class Work:
    """Integer operations of one window (a division or a multiply is one each)."""
    multiplies: int = 0
    additions: int = 0  # adds, subtractions, compares, shifts, moves
    divisions: int = 0
    square_roots: int = 0
    logs: int = 0

    @property
    def operations(self) -> int:
        """All of them as simple operations: a square root as 32, a log as 8."""
        return (self.multiplies + self.additions + self.divisions + SQRT_OPERATIONS * self.square_roots
                + LOG_OPERATIONS * self.logs)

    def __add__(self, other: Work) -> Work:
        return Work(*(getattr(self, f) + getattr(other, f) for f in
                      ("multiplies", "additions", "divisions", "square_roots", "logs")))


@dataclass(frozen=True)
class FrontendCost:
    """A front end's cost on one window shape."""
    scratch_bytes: int  # RAM: the scratch buffer
    input_bytes: int  # RAM the caller holds anyway: the int16 window ...
    output_bytes: int  # ... and the int8 features
    table_bytes: int  # flash: generated arrays, exact
    struct_bytes: int  # flash: config structs (ILP32)
    code_bytes_estimate: int  # flash: td_frontend.c, an estimate
    work: Work
    by_stage: tuple[tuple[str, int], ...] = field(default=())  # (what, operations), in order

    @property
    def flash_bytes_estimate(self) -> int:
        """Tables, structs and code: an estimate, because the code's size is."""
        return self.table_bytes + self.struct_bytes + self.code_bytes_estimate

    @property
    def operations(self) -> int:
        return self.work.operations

    @property
    def ram_bytes(self) -> int:
        """RAM the firmware holds for the front end beside the model: the scratch and the
        received int16 window (the features go straight into the model's input)."""
        return self.scratch_bytes + self.input_bytes

    @property
    def cycles_estimate(self) -> int:
        """Cycles of one window, an estimate: operations x CYCLES_PER_OPERATION."""
        return round(self.operations * CYCLES_PER_OPERATION)

    def describe(self) -> str:
        """One line for a report."""
        return (f"front end: {self.scratch_bytes:,} B scratch RAM, {self.table_bytes + self.struct_bytes:,} B tables "
                f"+ ~{self.code_bytes_estimate:,} B code flash (estimate), {self.operations:,} integer operations "
                f"per window ({self.work.divisions:,} divisions)")


def _normalize_work(block: Normalize, steps: int, channels: int) -> Work:
    n = steps * channels
    return Work(multiplies=2 * n, additions=6 * n, divisions=n + 2 * channels, square_roots=channels,
                logs=channels if block.log_scale else 0)


def _decimate_work(block: Decimate, steps: int, channels: int) -> Work:
    kept = steps // block.factor
    return Work(additions=kept * block.factor * channels, divisions=kept * channels)


def _spectrum_work(block: Spectrum, steps: int, channels: int, constants: dict) -> Work:
    n, bits = block.frame_length, constants["log2_length"]
    frames = constants["frames"] * channels
    butterflies = n // 2 * bits
    band_bins = int(sum(constants["band_count"]))
    per_frame = Work(
        multiplies=n + 4 * butterflies + 3 * band_bins + block.cepstra * block.bands,
        additions=2 * n + n * bits + 8 * butterflies + 3 * band_bins + block.bands + 2 * block.cepstra * block.bands,
        logs=block.bands)
    if block.relative:  # the bands' sum, its mean, the subtraction
        per_frame = per_frame + Work(additions=2 * block.bands, divisions=1)
    if block.pool:  # each feature added to its sum; then one division a feature and channel
        per_frame = per_frame + Work(additions=3 * block.features)
    work = Work(**{k: v * frames for k, v in per_frame.__dict__.items()})
    return work + Work(divisions=block.features * channels) if block.pool else work


def _stats_work(block: Stats, steps: int, channels: int, constants: dict) -> Work:
    n = constants["segment_length"] * block.segments * channels  # samples read
    runs = block.segments * channels
    crossings = sum(s.endswith("crossings") for s in block.stats)
    sqrt = sum(s in ("std", "rms") for s in block.stats)
    return Work(multiplies=2 * n, additions=(7 + 3 * crossings) * n, divisions=runs * (1 + len(block.stats)),
                square_roots=runs * sqrt)


def frontend_cost(frontend: Frontend, input_shape) -> FrontendCost:
    """RAM, flash and work of a front end on windows of one shape.

    Args:
        frontend: the chain (its output quantisation adds the per-row multipliers).
        input_shape: (steps, channels).
    Returns:
        The FrontendCost.
    """
    plan = frontend.plan(input_shape)
    steps, channels = plan.input_shape
    stages = [("quantise the float window", Work(multiplies=steps * channels, additions=4 * steps * channels))]
    if plan.time_scratch_bytes and not isinstance(frontend.blocks[0], Decimate):
        stages.append(("copy the window into scratch", Work(additions=steps * channels)))
    tables = 2 << LOG_TABLE_BITS  # the uint16 log2 table
    for stage in plan.stages:
        block, k = stage.block, stage.constants
        rows = stage.in_shape[0]
        if isinstance(block, Normalize):
            work = _normalize_work(block, rows, channels)
        elif isinstance(block, Decimate):
            work = _decimate_work(block, rows, channels)
        elif isinstance(block, Spectrum):
            work = _spectrum_work(block, rows, channels, k)
            tables += 2 * sum(len(k[name]) for name in ("window_q15", "cos_q15", "band_first", "band_count",
                                                         "band_offset", "band_weight", "dct_q15"))
        else:
            work = _stats_work(block, rows, channels, k)
            tables += len(k["stat_codes"])
        stages.append((block.describe(), work))
    out_size = plan.output_size
    if frontend.output is not None:
        tables += 5 * (len(plan.row_scales) + 1)  # an int32 multiplier and an int8 shift per row scale
        stages.append(("requantise to int8", Work(multiplies=out_size, additions=4 * out_size)))
    total = Work()
    for _, work in stages:
        total = total + work
    return FrontendCost(scratch_bytes=plan.scratch_bytes, input_bytes=2 * steps * channels, output_bytes=out_size,
                        table_bytes=tables, struct_bytes=CONFIG_STRUCT_BYTES + BLOCK_STRUCT_BYTES * len(plan.stages),
                        code_bytes_estimate=CODE_BYTES_ESTIMATE, work=total,
                        by_stage=tuple((what, work.operations) for what, work in stages))


def latency_ms_estimate(cost: FrontendCost, cpu_mhz: float) -> float:
    """A front end's time per window on a core at cpu_mhz, from cost.cycles_estimate (the same
    figure costs.figures adds to a model's latency)."""
    return cost.cycles_estimate / (cpu_mhz * 1000.0)


def ram_bytes(cost: FrontendCost) -> int:
    """RAM a front end holds beside the model's arena: cost.ram_bytes (its features go straight
    into the model's input, which the arena holds)."""
    return cost.ram_bytes
