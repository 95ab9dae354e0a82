"""Bounds on user input, in one table: the CLI's argument types and the library's checks
both read it, so each bound is written here and nowhere else.

Each bound is keyed by the option as the CLI spells it, which is also how the library's
messages name it ("sample values" bounds the values of a data file). Choices among names
that a registry defines, with what each name means, are checked by that registry, and the
CLI offers the registry's own names, so they too are written once: frameworks
(tinydeploy.codegen.frameworks.FRAMEWORKS), training budgets (tinydeploy.optimize.BUDGETS),
search budgets (tinydeploy.optimize.search.SEARCH_EPOCHS), stages (tinydeploy.optimize.STAGES),
library kinds (tinydeploy.codegen.library.KINDS)
and esptool chips (tinydeploy.core.boards.ESPTOOL_CHIPS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

from tinydeploy.core.errors import BadInput
from tinydeploy.core.names import ENGINE_NAMES


SUPPLY_V_RANGE = (1.0, 5.5)  # volts: below 1 V or above 5.5 V no MCU board here runs
MAX_BAUD = 20_000_000  # pyserial takes any positive rate; 20 Mbaud is well past any ESP32 UART (5 Mbaud)


@dataclass(frozen=True)
class Bound:
    """What one input accepts: a number of a kind within [low, high] (low excluded when
    low_open, no limit where None), or one of a set of names.

    Args:
        option: the input's name, as the CLI spells it ("--image-size").
        kind: int or float (str for a set of names).
        low, high: the smallest and largest accepted values (None: no limit).
        low_open: low itself is refused (a positive number: low 0, low_open).
        unit: what the number counts ("pixels", "KB").
        reason: why the bound is where it is, in one line.
        noun: what the value is, where that says more than "a number".
        choices: the accepted names, for a set of names.
        any_base: an int that may be written 0x... (and is shown in hex).
    """

    option: str
    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    unit: str = ""
    reason: str = ""
    noun: str = ""
    choices: tuple[str, ...] = ()
    any_base: bool = False

    def _show(self, value) -> str:
        return hex(value) if self.any_base else f"{value:g}" if isinstance(value, float) else str(value)

    def accepted(self) -> str:
        """What is accepted, in words: "a positive number of KB", "an image side in pixels, 4..128"."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        noun = self.noun or ("a whole number" if self.kind is int else "a number")
        head = noun + (f" {'in' if self.noun else 'of'} {self.unit}" if self.unit else "")
        if self.high is None:
            if self.low_open and self.low == 0 and not self.noun:
                return head.replace("a ", "a positive ", 1)
            if self.low_open:
                return f"{head}, above {self._show(self.low)}"
            return f"{head}, {'0 or more' if self.low == 0 else f'at least {self._show(self.low)}'}"
        if self.low_open:
            return f"{head} in ({self._show(self.low)}, {self._show(self.high)}]"
        return f"{head}, {self._show(self.low)}..{self._show(self.high)}"

    def read(self, text: str):
        """The value text spells, or None when it spells no finite value of this kind."""
        if self.choices:
            return text
        try:
            value = int(text, 0) if self.any_base else self.kind(text)
        except ValueError:
            return None
        return value if self.kind is int or math.isfinite(value) else None

    def accepts(self, value) -> bool:
        """Whether value is within the bound (and of its kind: no bools, no NaN or Inf)."""
        if self.choices:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, Integral if self.kind is int else Real):
            return False
        if not math.isfinite(value):
            return False
        above_low = self.low is None or (value > self.low if self.low_open else value >= self.low)
        return above_low and (self.high is None or value <= self.high)


# The bounds, one per input. Every CLI option with a numeric type or a fixed set of names is here.
BOUNDS = {bound.option: bound for bound in (
    Bound("--image-size", int, 4, 128, unit="pixels", noun="an image side",
          reason="the digits' side: at 4 the default CNN still learns (60%, fast budget, measured); at 128 its "
                 "arena is 127.5 KB, the largest that fits a shipped board (192 needs 285 KB, 512 needs 2 MB)"),
    Bound("--seed", int, 0, 2**31 - 1, noun="a seed",
          reason="numpy's seeds end at 2**32 - 1, and optimize adds a stage's index, search a trial's number: "
                 "half the range is kept for those"),
    Bound("--baud", int, 1, MAX_BAUD, unit="baud", noun="a line rate",
          reason="pyserial takes any positive rate; 20 Mbaud is well past any ESP32 UART (5 Mbaud)"),
    Bound("--tcp", int, 0, 65535, noun="a TCP port", reason="a loopback TCP port; 0 asks the system for a free one"),
    Bound("--runs", int, 1, reason="a latency needs at least one timed inference"),
    Bound("--warmup", int, 0, reason="warm-up inferences are optional"),
    Bound("--validate", int, 0, reason="labelled samples run on the device; 0 validates none"),
    Bound("--timeout", float, 0, low_open=True, unit="seconds",
          reason="a wait for a reply, or a search's length: one of 0 s ends before it starts"),
    Bound("--trials", int, 1, reason="a search of no trials finds nothing"),
    Bound("--max-arena-kb", float, 0, low_open=True, unit="KB", reason="a budget of 0 KB is never met"),
    Bound("--max-model-kb", float, 0, low_open=True, unit="KB", reason="a budget of 0 KB is never met"),
    Bound("--max-latency-ms", float, 0, low_open=True, unit="milliseconds", reason="a budget of 0 ms is never met"),
    Bound("--max-energy-uj", float, 0, low_open=True, unit="microjoules",
          reason="energy per inference; a budget of 0 µJ is never met"),
    Bound("--max-power-mw", float, 0, low_open=True, unit="milliwatts",
          reason="an average power at --rate-hz; a budget of 0 mW is never met"),
    Bound("--rate-hz", float, 0, low_open=True, unit="inferences per second",
          reason="the inference rate an average power is stated at: 0 Hz has no period, and a rate too fast "
                 "for inference plus wake is reported per sleep mode, not refused"),
    Bound("--duty-cycle-hz", float, 0, 1e6, low_open=True, unit="inferences per second",
          reason="the duty-cycled firmware's rate: 0 Hz has no period, and its period is whole microseconds"),
    Bound("--sleep", str, choices=("awake", "light", "deep"),
          reason="how the duty-cycled firmware rests between inferences (tinydeploy.costs.energy.SLEEP_MODES)"),
    Bound("--power-voltage", float, *SUPPLY_V_RANGE, unit="volts", noun="a supply voltage",
          reason="the supply a power monitor gives the board: the range a board profile's [power] supply_v "
                 "accepts; each monitor narrows it to what it supplies (a PPK2 0.8-5 V)"),
    Bound("--min-accuracy", float, 0, 1, low_open=True, noun="a fraction",
          reason="an accuracy is a fraction; 0 would accept any model"),
    Bound("--min-agreement", float, 0, 1, low_open=True, noun="a fraction",
          reason="an agreement is a fraction; 0 would accept any device"),
    Bound("--arena-margin", float, 0, 200, unit="percent", noun="a margin",
          reason="added to the measured TFLM arena; past 200% the arena is over 3x what TFLM measured it needs"),
    Bound("--offset", int, 0, 2**32 - 1, noun="a flash address", any_base=True,
          reason="esptool's flash addresses are 32-bit"),
    Bound("--window", int, 1, 65536, unit="steps", noun="a window length",
          reason="a streaming window of at least one sample; 65536 steps is past any window a board's RAM holds"),
    Bound("--hop", int, 1, 65536, unit="samples", noun="a hop",
          reason="samples between two classified windows: at least one; at most the longest --window"),
    Bound("--smoothing", int, 1, 64, unit="results", noun="a count",
          reason="results averaged by the streaming API: 1 is none; 64 keeps its history (64 x classes floats) small"),
    Bound("--engine", str, choices=ENGINE_NAMES, reason="the engines tinydeploy/codegen/engines.py renders"),
    Bound("sample values", float, 0, 1e18, noun="a magnitude",
          reason="float32 overflows at 3.4e38, so the square of a value above ~1.8e19 is Inf; at 1e20 the int8 "
                 "converter left a model's dense layer in float"),
    # A board profile's numbers (tinydeploy.core.boards), keyed as the profile spells them. They
    # divide latencies and land in platformio.ini and sdkconfig, so each is held to a physical range.
    Bound("cpu_mhz", int, 1, 1000, unit="MHz", noun="a CPU clock",
          reason="the fastest ESP32 (the P4) runs at 400 MHz; 1000 MHz or more is a clock given in kHz or Hz"),
    Bound("sram_kb", int, 1, 65536, unit="KB", noun="an internal RAM size",
          reason="an ESP32-P4 has 768 KB; 64 MB is more than any module's RAM, PSRAM included (32 MB)"),
    Bound("flash_kb", int, 0, 1_048_576, unit="KB", noun="a flash size",
          reason="0 for a board that runs from RAM; 1 GB is past any flash chip an ESP32 addresses"),
    Bound("arena_budget_kb", int, 1, 65536, unit="KB", noun="an arena budget",
          reason="a budget of 0 KB is never met; more than 64 MB is more RAM than any board here has"),
    Bound("serial.baud", int, 1, MAX_BAUD, unit="baud", noun="a line rate", reason="as --baud"),
    Bound("serial.fast_baud", int, 1, MAX_BAUD, unit="baud", noun="a line rate", reason="as --baud"),
    Bound("latency.cycles_per_mac", float, 0, 1e6, noun="a cycle count",
          reason="per MAC (per element for an op without MACs): TFLM's reference kernels take ~140 on an ESP32; "
                 "a negative or NaN count would make a negative or NaN latency that budgets judge as met"),
    Bound("latency.cycles_per_output", float, 0, 1e6, noun="a cycle count",
          reason="per output element (a requantization): tens of cycles measured; a million is a typo"),
    Bound("latency.cycles_per_op", float, 0, 1e9, noun="a cycle count",
          reason="fixed cycles per layer: hundreds measured; 1e9 is seconds at any clock here"),
)}


def problem(option: str, value) -> str | None:
    """What is wrong with value for option, in one line naming both and what is accepted; None
    when it is accepted."""
    bound = BOUNDS[option]
    if bound.accepts(value):
        return None
    shown = repr(value) if isinstance(value, str) else value
    return f"{option} is {bound.accepted()}, got {shown}"


def check(option: str, value):
    """value, when option's bound accepts it.

    Args:
        option: a key of BOUNDS, as the CLI spells it ("--image-size").
        value: what the user gave.

    Returns:
        value, unchanged.

    Raises:
        BadInput: naming the option, the value and what is accepted.
    """
    found = problem(option, value)
    if found:
        raise BadInput(found)
    return value
