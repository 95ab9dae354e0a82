"""Board profiles. A board is a TOML file in boards/; adding one needs no code.

The profiles also ship inside the package, so an installed wheel finds them
without a source tree (see tinydeploy.core.resources).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from tinydeploy.core.bounds import BOUNDS, SUPPLY_V_RANGE
from tinydeploy.core.errors import BadInput
from tinydeploy.core.outputs import checked_path
from tinydeploy.core.names import ARDUINO, ENGINE_NAMES, ESPIDF, MAKE
from tinydeploy.core.resources import shipped

KERNEL_SETS = ("esp-nn", "ansi")
ISAS = ("rv32imc",)  # instruction sets the C engine's cost can be measured on, under QEMU
ENGINES = ENGINE_NAMES
# TFLM kernel libraries a board's [tflm] table may name per framework (tinydeploy.costs.kernels).
TFLM_KERNEL_LIBRARIES = ("reference", "esp-nn", "esp-nn-s3", "cmsis-nn")
# esptool's --chip names (esptool v5 `esptool --help`).
ESPTOOL_CHIPS = ("esp32", "esp32s2", "esp32s3", "esp32c2", "esp32c3", "esp32c5", "esp32c6", "esp32h2", "esp32p4")
# A board's name becomes a file name, a PlatformIO environment ([env:NAME]) and part of C names.
BOARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
CALIBRATED = "calibrated"  # the kernel set `tinydeploy calibrate` fits from an engine's profiled runs
BOARDS_PATH = "TINYDEPLOY_BOARDS"  # environment variable: folders of user board profiles (os.pathsep)
DEFAULT_BOARD = "esp32-s3-devkitc-1"  # the board commands use when none is named


# A board's [power] table: the figures an energy estimate needs (tinydeploy.costs.energy).
# Currents in mA at the supply voltage, times in ms.
POWER_FIGURES = {
    "supply_v": "supply voltage the currents are measured at (V)",
    "active_ma": "current while computing at cpu_mhz, radio off (mA)",
    "idle_ma": "current awake in an idle loop, radio off (mA)",
    "light_sleep_ma": "current in light sleep (mA)",
    "deep_sleep_ma": "current in deep sleep (mA)",
    "light_wake_ms": "time to wake from light sleep and be ready to compute (ms)",
    "light_wake_ma": "current while waking from light sleep (mA)",
    "deep_wake_ms": "time to wake from deep sleep (a reboot) and be ready to compute (ms)",
    "deep_wake_ma": "current while waking from deep sleep (mA)",
}
# Not a figure: the GPIO the duty-cycled firmware raises during each inference (firmware/td_duty.c),
# for a power monitor's logic input. A choice of the user's wiring, not a datasheet value.
MARKER_GPIO = "marker_gpio"
MARKER_GPIO_RANGE = (0, 63)  # the ESP32 family's GPIO numbers (the S3's go to 48)
MAX_CURRENT_MA = 2000.0  # a sane bound: an ESP32 transmitting Wi-Fi peaks near 0.5 A
_CURRENTS = ("active_ma", "idle_ma", "light_sleep_ma", "deep_sleep_ma", "light_wake_ma", "deep_wake_ma")
_WAKE_TIMES = ("light_wake_ms", "deep_wake_ms")


@dataclass(frozen=True)
class PowerProfile:
    """A board's power figures ([power] in its profile), each in POWER_FIGURES' units."""

    supply_v: float
    active_ma: float
    idle_ma: float
    light_sleep_ma: float
    deep_sleep_ma: float
    light_wake_ms: float
    light_wake_ma: float
    deep_wake_ms: float
    deep_wake_ma: float
    source: str
    overridden: tuple[str, ...] = ()  # figures replaced by override_power, not the profile's own
    marker_gpio: int | None = None  # MARKER_GPIO: the duty-cycled firmware's inference marker (None: none)

    def figures(self) -> dict[str, float]:
        """The numeric figures by name (POWER_FIGURES' keys)."""
        return {name: getattr(self, name) for name in POWER_FIGURES}

    def to_dict(self) -> dict:
        return {**self.figures(), "source": self.source, "overridden": list(self.overridden),
                MARKER_GPIO: self.marker_gpio}


def power_problems(table: dict) -> list[str]:
    """Everything wrong with a [power] table's figures, each naming its field ("power.active_ma ...")."""
    problems = [f"'power.{name}' missing ({what})" for name, what in POWER_FIGURES.items() if name not in table]
    problems += [f"'power.{name}' is unknown; accepted: {', '.join([*POWER_FIGURES, 'source', MARKER_GPIO])}"
                 for name in table if name not in POWER_FIGURES and name not in ("source", MARKER_GPIO)]
    marker = table.get(MARKER_GPIO)
    low_pin, high_pin = MARKER_GPIO_RANGE
    if marker is not None and (isinstance(marker, bool) or not isinstance(marker, int)
                               or not low_pin <= marker <= high_pin):
        problems.append(f"'power.{MARKER_GPIO}' is {marker!r}; accepted: a GPIO number, {low_pin}-{high_pin}")
    if not isinstance(table.get("source"), str) or not table.get("source", "").strip():
        problems.append("'power.source' missing: say where the figures come from (datasheet table or measurement, "
                        "chip or dev board)")
    numbers = {}
    for name in POWER_FIGURES:
        value = table.get(name)
        if name not in table:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"'power.{name}' is {value!r}; it must be a number")
        elif not math.isfinite(value):
            problems.append(f"'power.{name}' is {value}; it must be a finite number")
        else:
            numbers[name] = float(value)
    low, high = SUPPLY_V_RANGE
    if "supply_v" in numbers and not low <= numbers["supply_v"] <= high:
        problems.append(f"'power.supply_v' is {numbers['supply_v']} V; accepted: {low}-{high} V")
    problems += [f"'power.{name}' is {numbers[name]} mA; accepted: above 0 and below {MAX_CURRENT_MA:g} mA"
                 for name in _CURRENTS if name in numbers and not 0 < numbers[name] < MAX_CURRENT_MA]
    problems += [f"'power.{name}' is {numbers[name]} ms; a wake time is 0 or more"
                 for name in _WAKE_TIMES if name in numbers and numbers[name] < 0]
    active = numbers.get("active_ma")
    if active is not None and 0 < active < MAX_CURRENT_MA:
        problems += [f"'power.{name}' is {numbers[name]} mA, not below 'power.active_ma' {active} mA "
                     "(a sleep draws less than computing; are the figures swapped or in the wrong unit?)"
                     for name in ("light_sleep_ma", "deep_sleep_ma") if name in numbers and numbers[name] >= active]
        if numbers.get("idle_ma", 0) > active:
            problems.append(f"'power.idle_ma' is {numbers['idle_ma']} mA, above 'power.active_ma' {active} mA "
                            "(idling draws no more than computing)")
    return problems


def parse_power(table: dict | None, origin: str) -> PowerProfile | None:
    """A PowerProfile from a profile's [power] table (None for a profile without one).

    Raises:
        BadInput: a figure is missing, unknown, not a number, NaN or outside its physical range.
    """
    if table is None:
        return None
    if not isinstance(table, dict):
        raise BadInput(f"board profile {origin}: 'power' must be a table ([power])")
    problems = power_problems(table)
    if problems:
        raise BadInput(f"board profile {origin}: " + "; ".join(problems))
    return PowerProfile(**{name: float(table[name]) for name in POWER_FIGURES}, source=table["source"].strip(),
                        marker_gpio=table.get(MARKER_GPIO))


@dataclass(frozen=True)
class Board:
    name: str
    chip: str
    description: str
    cpu_mhz: int
    sram_kb: int
    flash_kb: int
    arena_budget_kb: int
    platformio: dict
    baud: int
    fast_baud: int
    kernels: str
    cycles_per_mac: dict  # kernel set -> {op name: cycles per MAC}
    latency_source: str
    path: str
    engines: tuple[str, ...] = ENGINES
    isa: str | None = None  # the CPU's instruction set where tinydeploy can emulate it ("rv32imc")
    toolchain: dict | None = None  # a cross-compiler build (no PlatformIO): [toolchain]
    emulator: dict | None = None   # the board runs in an emulator: [emulator]
    tflm: dict | None = None  # [tflm]: framework -> TFLM kernel library (sizes the arena)
    esptool_chip: str | None = None  # esptool's --chip name, for boards flashed with esptool
    shadows: str | None = None  # the profile file of the same name this one overrides
    cycles_per_op: dict = field(default_factory=dict)  # kernel set -> {op: fixed cycles} (calibrated profiles)
    cycles_per_output: dict = field(default_factory=dict)  # kernel set -> {op: cycles per output element}
    calibrated_engine: str | None = None  # the engine whose profiled runs made the CALIBRATED set
    power: PowerProfile | None = None  # [power]: figures for energy estimates (None: estimates unavailable)

    @property
    def emulated(self) -> bool:
        return self.emulator is not None

    @property
    def timer(self) -> str:
        """What the firmware's m-lap-us stamps count: "us", or "instructions" on an emulator."""
        return (self.emulator or {}).get("timer", "us")

    @property
    def framework(self) -> str:
        """The firmware framework the profile builds with by default (tinydeploy.codegen.frameworks):
        "make" for a board with its own cross compiler."""
        return MAKE if self.toolchain is not None else self.platformio.get("framework", ESPIDF)

    def tflm_kernels(self, framework: str) -> str:
        """The TFLM kernel library this board's firmware links for a framework
        (TFLM's reference kernels where the profile names none)."""
        return (self.tflm or {}).get(framework, "reference")

    def kernels_for(self, engine: str) -> str:
        """The kernel set that estimates an engine's latency: the calibrated one where this
        profile was calibrated on that engine's runs, else the profile's own."""
        return CALIBRATED if self.calibrated_engine == engine and CALIBRATED in self.cycles_per_mac else self.kernels

    def estimate_basis(self, engine: str) -> str:
        """Where an engine's latency estimate on this board comes from, in a few words."""
        kernels = self.kernels_for(engine)
        if kernels == CALIBRATED:
            return f"calibrated on this board's profiled {engine} runs ({self.path})"
        if self.cycles_per_output.get(kernels) or self.cycles_per_op.get(kernels):
            return f"{kernels} cycles per MAC, per output and per layer"
        return f"{kernels} cycles per MAC"

    def estimate_us(self, op: str, work: int, kernels: str | None = None, outputs: int = 0) -> float:
        """Estimated microseconds for one op: its work (MACs, or for an op without MACs its
        largest tensor's elements; tinydeploy.costs.counts.op_work) at the profile's cycles per unit,
        plus, where the profile has them (a calibrated one), cycles per output element (the
        requantization of a MAC op's outputs) and fixed cycles. 0 if not costed."""
        kernels = kernels or self.kernels
        cycles = (work * self.cycles_per_mac[kernels].get(op, 0.0)
                  + outputs * self.cycles_per_output.get(kernels, {}).get(op, 0.0)
                  + self.cycles_per_op.get(kernels, {}).get(op, 0.0))
        return cycles / self.cpu_mhz

    def to_dict(self) -> dict:
        return {
            "name": self.name, "chip": self.chip, "description": self.description,
            "cpu_mhz": self.cpu_mhz, "sram_kb": self.sram_kb, "flash_kb": self.flash_kb,
            "arena_budget_kb": self.arena_budget_kb, "platformio": dict(self.platformio),
            "baud": self.baud, "fast_baud": self.fast_baud, "kernels": self.kernels,
            "cycles_per_mac": self.cycles_per_mac, "latency_source": self.latency_source,
            "engines": list(self.engines), "toolchain": self.toolchain, "emulator": self.emulator,
            "tflm": self.tflm, "isa": self.isa, "esptool_chip": self.esptool_chip,
            "path": self.path, "shadows": self.shadows, "cycles_per_op": self.cycles_per_op,
            "cycles_per_output": self.cycles_per_output, "calibrated_engine": self.calibrated_engine,
            "power": self.power.to_dict() if self.power else None,
        }


_REQUIRED = {
    "name": str, "chip": str, "description": str, "cpu_mhz": int, "sram_kb": int,
    "flash_kb": int, "arena_budget_kb": int, "serial": dict, "latency": dict,
}
_KIND_WORDS = {str: "a string", int: "a whole number", dict: "a table"}
_TOOLCHAIN_KEYS = ("cc", "size", "cflags", "ldflags", "linker_script", "sources", "packages")
_EMULATOR_KEYS = ("command", "packages", "timer")
# [emulator] flash_bytes and flash_args: the flash file of a firmware with model slots
# (tinydeploy.device.emulate), and the arguments that give it to the emulator and load the firmware.
FLASH_PLACEHOLDERS = ("{flash}", "{firmware}")
MAX_FLASH_BYTES = 2**32  # a 32-bit address space holds no larger flash


_TEXT, _TEXTS = "a string", "a list of strings"


def _kind_problem(value, kind: str) -> bool:
    if kind == _TEXT:
        return not isinstance(value, str)
    if kind == _TEXTS:
        return not (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if kind == "a table of numbers":
        return not (isinstance(value, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                    for v in value.values()))
    return not (isinstance(value, dict) and all(not _kind_problem(t, "a table of numbers") for t in value.values()))


def _type_problems(raw: dict, pio: dict, toolchain: dict | None, emulator: dict | None, latency: dict) -> list[str]:
    """Fields of the wrong type, each named (a profile is user data: a number where a table
    belongs must be a message, not a crash later)."""
    fields = [(f"platformio.{k}", pio.get(k), _TEXT) for k in ("platform", "board", "framework") if k in pio]
    fields += [(f"toolchain.{k}", toolchain[k], _TEXT if k in ("cc", "size", "linker_script") else _TEXTS)
               for k in (*_TOOLCHAIN_KEYS, "slot_sources") if toolchain and k in toolchain]
    fields += [(f"emulator.{k}", emulator[k], _TEXTS) for k in ("command", "packages", "flash_args")
               if emulator and k in emulator]
    fields += [(k, raw[k], _TEXTS) for k in ("engines",) if k in raw]
    fields += [(k, raw[k], _TEXT) for k in ("isa", "esptool_chip") if k in raw]
    fields += [("tflm", raw["tflm"], "a table of strings")] if "tflm" in raw else []
    fields += [(f"latency.{k}", latency[k], _TEXT) for k in ("kernels", "source", "calibrated_engine") if k in latency]
    fields += [(f"latency.{k}", latency[k], "a table of tables of numbers")
               for k in ("cycles_per_mac", "cycles_per_op", "cycles_per_output") if k in latency]
    serial = raw.get("serial") if isinstance(raw.get("serial"), dict) else {}
    problems = []
    for name, value, kind in fields:
        wrong = (not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values()))
                 if kind == "a table of strings" else _kind_problem(value, kind))
        if wrong:
            problems.append(f"'{name}' must be {kind}, got {value!r}"[:200])
    numbers = [(f"serial.{key}", f"serial.{key}", serial[key]) for key in ("baud", "fast_baud") if key in serial]
    numbers += [(key, key, raw[key]) for key in ("cpu_mhz", "sram_kb", "flash_kb", "arena_budget_kb")
                if isinstance(raw.get(key), int)]  # (another type: reported with the required fields)
    numbers += [(f"latency.{table}", f"latency.{table}.{kernels}.{op}", value)
                for table in ("cycles_per_mac", "cycles_per_op", "cycles_per_output")
                if not _kind_problem(latency.get(table, {}), "a table of tables of numbers")
                for kernels, ops in latency.get(table, {}).items() for op, value in ops.items()]
    for key, shown, value in numbers:
        if not BOUNDS[key].accepts(value):
            problems.append(f"'{shown}' is {BOUNDS[key].accepted()}, got {value!r}")
    return problems


# What each string of a profile may hold. The strings are written into generated files (platformio.ini,
# a Makefile, C and INI comments, the README) or run as a command line, so each is held to characters
# that stay inert there: no line breaks where a line ends a value (a newline in platformio.ini starts
# a new section), no ';' '#' '[' '$' where the file gives them a meaning.
_PIO_WORD = r"[A-Za-z0-9_.+@/:~=<>^*,!-][A-Za-z0-9_.+@/:~=<>^*,!#-]*"
TEXT_RULES = {
    "one line": (re.compile(r"[^\x00-\x1f\x7f]*"), "one line of text, without control characters"),
    "text": (re.compile(r"[^\x00-\x08\x0b-\x1f\x7f]*"), "text without control characters (line breaks and tabs "
                                                          "are fine)"),
    "platformio value": (re.compile(f"{_PIO_WORD}( {_PIO_WORD})*"),
                         "a PlatformIO value: words of letters, digits and _ . + @ / : ~ = < > ^ * , ! - # separated "
                         "by single spaces, a word not starting with '#' (no ';', '[', '$', quotes or line breaks: "
                         "platformio.ini would read them as comments, sections or variables)"),
    "identifier": (re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*"),
                   "letters, digits, '_', '.' and '-', starting with a letter or digit"),
    "make word": (re.compile(r"[A-Za-z0-9_.+,=/:@-]+"),
                  "one word of letters, digits and _ . + , = / : @ - (a Makefile would expand '$', end the line at "
                  "'#' or a line break, and the shell would split a space)"),
    "file name": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*"),
                  "the name of a file in tinydeploy's firmware/ folder: letters, digits, '_', '.' and '-', no '/'"),
    "debian package": (re.compile(r"[a-z0-9][a-z0-9+.-]+"),
                       "a Debian package name: lower-case letters, digits, '+', '.' and '-'"),
}
PIO_FRAMEWORKS = (ESPIDF, ARDUINO)  # the frameworks a [platformio] table may name (tinydeploy.codegen.frameworks)


def _text_fields(raw: dict, pio: dict, toolchain: dict | None, emulator: dict | None,
                 latency: dict) -> list[tuple[str, object, str]]:
    """(the key as the profile spells it, its value, its TEXT_RULES rule) for every string of a profile."""
    fields = [(key, raw.get(key), "one line") for key in ("chip", "description")]
    fields += [("platformio.platform", pio.get("platform"), "platformio value"),
               ("platformio.board", pio.get("board"), "identifier")]
    for key, rule in (("cc", "make word"), ("size", "make word"), ("linker_script", "file name"),
                      ("cflags", "make word"), ("ldflags", "make word"), ("sources", "file name"),
                      ("packages", "debian package"), ("slot_sources", "file name")):
        values = (toolchain or {}).get(key)
        fields += [(f"toolchain.{key}", v, rule) for v in (values if isinstance(values, list) else [values])]
    for key, rule in (("command", "one line"), ("packages", "debian package"), ("flash_args", "one line")):
        values = (emulator or {}).get(key)
        fields += [(f"emulator.{key}", v, rule) for v in (values if isinstance(values, list) else [values])]
    fields += [("latency.source", latency.get("source"), "text"), ("latency.kernels", latency.get("kernels"), "identifier")]
    for table in ("cycles_per_mac", "cycles_per_op", "cycles_per_output"):
        for kernels, ops in (latency.get(table) or {}).items() if isinstance(latency.get(table), dict) else ():
            fields.append((f"latency.{table}", kernels, "identifier"))
            fields += [(f"latency.{table}.{kernels}", op, "identifier") for op in (ops if isinstance(ops, dict) else ())]
    power = raw.get("power")
    fields += [("power.source", power.get("source"), "text")] if isinstance(power, dict) else []
    return [(key, value, rule) for key, value, rule in fields if isinstance(value, str)]


def _flash_problems(emulator: dict) -> list[str]:
    """What is wrong with [emulator]'s flash_bytes and flash_args (a list of strings of the wrong
    type is reported by _type_problems)."""
    size, args = emulator.get("flash_bytes"), emulator.get("flash_args")
    if size is None and args is None:
        return []
    if size is None or args is None:
        return [f"'emulator.{'flash_args' if args is None else 'flash_bytes'}' missing: flash_bytes (the flash "
                "file's size) and flash_args (how the emulator gets it) come together"]
    problems = []
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_FLASH_BYTES:
        problems.append(f"'emulator.flash_bytes' is {size!r}; accepted: a whole number of bytes, 1..{MAX_FLASH_BYTES}")
    if isinstance(args, list) and all(isinstance(a, str) for a in args):
        text = " ".join(args)
        unknown = sorted(set(re.findall(r"\{[^{}]*\}", text)) - set(FLASH_PLACEHOLDERS))
        absent = [p for p in FLASH_PLACEHOLDERS if p not in text]
        if unknown or absent:
            problems.append(f"'emulator.flash_args' is {args!r}"[:200] + f"; accepted: arguments naming the flash file "
                            f"as {{flash}} and the firmware as {{firmware}}, each at least once, and no other {{...}}")
    return problems


def _text_problems(raw: dict, pio: dict, toolchain: dict | None, emulator: dict | None, latency: dict) -> list[str]:
    """Strings holding characters the files they are written into would read as code, each named
    with what is accepted (strings of the wrong type are reported by _type_problems)."""
    problems = []
    for key, value, rule in _text_fields(raw, pio, toolchain, emulator, latency):
        pattern, accepted = TEXT_RULES[rule]
        if not pattern.fullmatch(value):
            problems.append(f"'{key}' is {value[:80]!r}; accepted: {accepted}")
    framework = pio.get("framework")
    if isinstance(framework, str) and framework not in PIO_FRAMEWORKS:
        problems.append(f"'platformio.framework' is {framework[:80]!r}; accepted: {', '.join(PIO_FRAMEWORKS)}")
    return problems


def parse_board(text: str, origin: str) -> Board:
    """Build a Board from a profile's TOML text, reporting every problem at once.

    Args:
        text: the TOML.
        origin: the file it came from, for messages.

    Raises:
        BadInput: the TOML is invalid or fields are missing or of the wrong type.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"board profile {origin}: invalid TOML ({exc})") from exc
    problems = [f"'{key}' missing" for key in _REQUIRED if key not in raw]
    problems += [f"'{key}' must be {_KIND_WORDS[kind]}, got {raw[key]!r}"[:200] for key, kind in _REQUIRED.items()
                 if key in raw and (not isinstance(raw[key], kind) or isinstance(raw[key], bool))]
    pio = raw.get("platformio", {}) if isinstance(raw.get("platformio"), dict) else {}
    toolchain = raw.get("toolchain") if isinstance(raw.get("toolchain"), dict) else None
    emulator = raw.get("emulator") if isinstance(raw.get("emulator"), dict) else None
    if toolchain is None and "platformio" not in raw:
        problems.append("'platformio' missing (a board built with PlatformIO needs it; a board with its own "
                        "cross compiler has [toolchain] instead)")
    elif toolchain is None:
        problems += [f"'platformio.{k}' missing" for k in ("platform", "board", "framework") if k not in pio]
    else:
        problems += [f"'toolchain.{k}' missing" for k in _TOOLCHAIN_KEYS if k not in toolchain]
    if emulator is not None:
        problems += [f"'emulator.{k}' missing" for k in _EMULATOR_KEYS if k not in emulator]
        if emulator.get("timer") not in (None, "us", "instructions"):
            problems.append(f"'emulator.timer' is '{emulator.get('timer')}'; accepted: us, instructions")
        problems += _flash_problems(emulator)
    if isinstance(raw.get("name"), str) and not BOARD_NAME.fullmatch(raw["name"]):
        problems.append(f"'name' is '{raw['name']}'; a name is letters, digits, '_', '.' and '-', "
                        "starting with a letter or digit (it names files and the PlatformIO environment)")
    esptool_chip = raw.get("esptool_chip")
    if esptool_chip is not None and esptool_chip not in ESPTOOL_CHIPS:
        problems.append(f"'esptool_chip' is '{esptool_chip}'; accepted: {', '.join(ESPTOOL_CHIPS)}")
    engines = tuple(raw.get("engines", ENGINES)) if isinstance(raw.get("engines", ENGINES), (list, tuple)) else ()
    isa = raw.get("isa")
    if isa is not None and isa not in ISAS:
        problems.append(f"'isa' is '{isa}'; accepted: {', '.join(ISAS)}")
    problems += [f"engine '{e}' in 'engines' is unknown; accepted: {', '.join(ENGINES)}" for e in engines
                 if e not in ENGINES]
    tflm = raw.get("tflm") if isinstance(raw.get("tflm"), dict) else None
    problems += [f"'tflm.{framework}' is '{name}'; accepted: {', '.join(TFLM_KERNEL_LIBRARIES)}"
                 for framework, name in (tflm or {}).items() if name not in TFLM_KERNEL_LIBRARIES]
    latency = raw.get("latency", {}) if isinstance(raw.get("latency"), dict) else {}
    problems += _type_problems(raw, pio, toolchain, emulator, latency)
    problems += _text_problems(raw, pio, toolchain, emulator, latency)
    tables = latency.get("cycles_per_mac", {}) if isinstance(latency.get("cycles_per_mac", {}), dict) else {}
    kernels = latency.get("kernels", "esp-nn")
    if isinstance(kernels, str) and kernels not in tables:  # (not a string: reported above)
        problems.append(f"'latency.kernels' is '{kernels}' but latency.cycles_per_mac has "
                        f"{', '.join(tables) or 'no tables'}")
    calibrated_engine = latency.get("calibrated_engine")
    if calibrated_engine is not None and (calibrated_engine not in ENGINES or CALIBRATED not in tables):
        problems.append(f"'latency.calibrated_engine' is '{calibrated_engine}'; it names the engine of a "
                        f"'{CALIBRATED}' kernel set in latency.cycles_per_mac, one of: {', '.join(ENGINES)}")
    if not latency.get("source"):
        problems.append("'latency.source' missing: say where the coefficients come from")
    serial = raw.get("serial", {}) if isinstance(raw.get("serial"), dict) else {}
    if not isinstance(serial.get("baud"), int):
        problems.append("'serial.baud' missing")
    if "power" in raw:
        problems += power_problems(raw["power"]) if isinstance(raw["power"], dict) else ["'power' must be a table"]
    if problems:
        raise BadInput(f"board profile {origin}: " + "; ".join(problems))
    return Board(
        name=raw["name"], chip=raw["chip"], description=raw["description"],
        cpu_mhz=raw["cpu_mhz"], sram_kb=raw["sram_kb"], flash_kb=raw["flash_kb"],
        arena_budget_kb=raw["arena_budget_kb"], platformio=dict(pio),
        baud=serial["baud"], fast_baud=serial.get("fast_baud", serial["baud"]),
        kernels=kernels,
        cycles_per_mac={k: {op: float(v) for op, v in t.items()} for k, t in tables.items()},
        cycles_per_op={k: {op: float(v) for op, v in t.items()} for k, t in latency.get("cycles_per_op", {}).items()},
        cycles_per_output={k: {op: float(v) for op, v in t.items()}
                           for k, t in latency.get("cycles_per_output", {}).items()},
        latency_source=latency["source"].strip(), path=origin,
        engines=engines, toolchain=toolchain, emulator=emulator, tflm=tflm, isa=isa, esptool_chip=esptool_chip,
        calibrated_engine=calibrated_engine, power=parse_power(raw.get("power"), origin),
    )


def override_power(board: Board, figures: dict[str, float]) -> Board:
    """The board with some power figures replaced (a user's measured active current, say).

    Args:
        board: the board; one without a [power] table must be given every figure.
        figures: {figure name: value} in POWER_FIGURES' units.

    Returns:
        A copy of the board whose power profile lists the replaced figures in `overridden`.

    Raises:
        BadInput: an unknown figure name, or the result fails the profile's own checks.
    """
    unknown = [name for name in figures if name not in POWER_FIGURES]
    if unknown:
        raise BadInput(f"unknown power figure {', '.join(repr(n) for n in unknown)}; "
                       f"accepted: {', '.join(POWER_FIGURES)}")
    base = board.power.to_dict() if board.power else {"source": "figures given by the user"}
    base.pop("overridden", None)
    table = {**base, **figures}
    problems = power_problems(table)
    if problems:
        raise BadInput(f"power figures for board {board.name}: " + "; ".join(problems))
    already = board.power.overridden if board.power else ()
    power = PowerProfile(**{name: float(table[name]) for name in POWER_FIGURES}, source=table["source"],
                         overridden=tuple(dict.fromkeys([*already, *figures])), marker_gpio=table.get(MARKER_GPIO))
    return replace(board, power=power)


def board_dirs(extra_dirs: tuple[str | Path, ...] = ()) -> tuple[Path, ...]:
    """The folders of user board profiles: those in $TINYDEPLOY_BOARDS (a path list), then
    extra_dirs (--boards-dir). Each must be a folder."""
    listed = [p for p in os.environ.get(BOARDS_PATH, "").split(os.pathsep) if p]
    folders = []
    for folder, where in [(p, f"${BOARDS_PATH}") for p in listed] + [(p, "--boards-dir") for p in extra_dirs]:
        if not Path(checked_path(folder, where)).is_dir():
            raise BadInput(f"{where} {folder}: no such folder of board profiles")
        folders.append(Path(folder))
    return tuple(folders)


def _profile_files(extra_dirs) -> list[tuple[str, str]]:
    files = []
    for folder in (shipped("boards"), *board_dirs(tuple(extra_dirs))):
        for p in sorted(Path(folder).glob("*.toml")):
            try:
                files.append((str(p), p.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                raise BadInput(f"board profile {p}: can't read it as UTF-8 text ({exc})") from exc
    return files


def load_boards(extra_dirs: tuple[str | Path, ...] = ()) -> dict[str, Board]:
    """All board profiles, by name: the shipped ones, then those in $TINYDEPLOY_BOARDS and
    extra_dirs (--boards-dir).

    Args:
        extra_dirs: folders of further profiles (a later one overrides a name).

    Returns:
        {name: Board}, sorted by name.
    """
    boards: dict[str, Board] = {}
    for origin, text in _profile_files(extra_dirs):
        board = parse_board(text, origin)
        if board.name in boards:
            board = replace(board, shadows=boards[board.name].path)
        boards[board.name] = board
    return dict(sorted(boards.items()))


def get_board(name: str, extra_dirs: tuple[str | Path, ...] = ()) -> Board:
    """The board called name.

    Raises:
        BadInput: no such board; the message lists the known ones.
    """
    boards = load_boards(extra_dirs)
    if name not in boards:
        raise BadInput(f"unknown board '{name}'. Known boards: {', '.join(boards)}")
    return boards[name]


def board_from_file(path: str | Path) -> Board:
    """The board profile in one file (a project records where its board came from)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"board profile {path}: can't read it ({exc})") from exc
    return parse_board(text, str(path))
