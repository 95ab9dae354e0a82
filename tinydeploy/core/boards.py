"""Board profiles. A board is a TOML file in boards/; adding one needs no code.

The profiles also ship inside the package, so an installed wheel finds them
without a source tree (see tinydeploy.core.resources).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from tinydeploy.core.errors import BadInput
from tinydeploy.core.outputs import checked_path
from tinydeploy.core.names import ENGINE_NAMES, ESPIDF, MAKE
from tinydeploy.core.resources import shipped

KERNEL_SETS = ("esp-nn", "ansi")
ISAS = ("rv32imc",)  # instruction sets the C engine's cost can be measured on, under QEMU
ENGINES = ENGINE_NAMES
# TFLM kernel libraries a board's [tflm] table may name per framework (tinydeploy.costs.kernels).
TFLM_KERNEL_LIBRARIES = ("reference", "esp-nn", "esp-nn-s3")
# esptool's --chip names (esptool v5 `esptool --help`).
ESPTOOL_CHIPS = ("esp32", "esp32s2", "esp32s3", "esp32c2", "esp32c3", "esp32c5", "esp32c6", "esp32h2", "esp32p4")
# A board's name becomes a file name, a PlatformIO environment ([env:NAME]) and part of C names.
BOARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
CALIBRATED = "calibrated"  # the kernel set `tinydeploy calibrate` fits from an engine's profiled runs
BOARDS_PATH = "TINYDEPLOY_BOARDS"  # environment variable: folders of user board profiles (os.pathsep)
DEFAULT_BOARD = "esp32-s3-devkitc-1"  # the board commands use when none is named


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
        }


_REQUIRED = {
    "name": str, "chip": str, "description": str, "cpu_mhz": int, "sram_kb": int,
    "flash_kb": int, "arena_budget_kb": int, "serial": dict, "latency": dict,
}
_TOOLCHAIN_KEYS = ("cc", "size", "cflags", "ldflags", "linker_script", "sources", "packages")
_EMULATOR_KEYS = ("command", "packages", "timer")


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
    problems += [f"'{key}' must be a {kind.__name__}" for key, kind in _REQUIRED.items()
                 if key in raw and not isinstance(raw[key], kind)]
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
    if isinstance(raw.get("name"), str) and not BOARD_NAME.fullmatch(raw["name"]):
        problems.append(f"'name' is '{raw['name']}'; a name is letters, digits, '_', '.' and '-', "
                        "starting with a letter or digit (it names files and the PlatformIO environment)")
    esptool_chip = raw.get("esptool_chip")
    if esptool_chip is not None and esptool_chip not in ESPTOOL_CHIPS:
        problems.append(f"'esptool_chip' is '{esptool_chip}'; accepted: {', '.join(ESPTOOL_CHIPS)}")
    engines = tuple(raw.get("engines", ENGINES))
    isa = raw.get("isa")
    if isa is not None and isa not in ISAS:
        problems.append(f"'isa' is '{isa}'; accepted: {', '.join(ISAS)}")
    problems += [f"engine '{e}' in 'engines' is unknown; accepted: {', '.join(ENGINES)}" for e in engines
                 if e not in ENGINES]
    tflm = raw.get("tflm") if isinstance(raw.get("tflm"), dict) else None
    problems += [f"'tflm.{framework}' is '{name}'; accepted: {', '.join(TFLM_KERNEL_LIBRARIES)}"
                 for framework, name in (tflm or {}).items() if name not in TFLM_KERNEL_LIBRARIES]
    latency = raw.get("latency", {}) if isinstance(raw.get("latency"), dict) else {}
    tables = latency.get("cycles_per_mac", {})
    kernels = latency.get("kernels", "esp-nn")
    if kernels not in tables:
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
        calibrated_engine=calibrated_engine,
    )


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
