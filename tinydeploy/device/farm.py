"""A board farm: several boards benched (and judged) in parallel.

A farm file lists the boards, one TOML table each::

    [[board]]
    name = "s3-a"                 # names its results folder: OUT/s3-a/
    port = "/dev/ttyUSB0"         # a device path or a pyserial URL
    profile = "esp32-s3-devkitc-1"  # optional: the board profile it should report
    reset = "rts"                 # optional: "rts" (ESP32 auto-reset, the default) or "none"

Each board is benched in its own thread (serial I/O waits, so threads run in parallel) into
OUT/NAME/, exactly as `bench` does one. A board that fails, or is missing, fails its own
row: every other board's results are kept. OUT/farm.json holds the rows and an aggregate per
board profile: the median of the boards' median latencies and their spread.
"""

from __future__ import annotations

import json
import re
import statistics
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from tinydeploy.core.errors import BadInput, TinyDeployError
from tinydeploy.core.outputs import NAME_MAX
from tinydeploy.core.ports import check_port

RESETS = ("rts", "none")
SUMMARY = "farm.json"  # OUT/farm.json: every row and the aggregate
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class FarmBoard:
    name: str
    port: str
    profile: str | None = None
    reset: str = "rts"


@dataclass
class FarmRow:
    board: FarmBoard
    results: dict = field(default_factory=dict)  # the board's results.json, as far as it got
    error: str | None = None
    verdicts: list | None = None  # verify: the board's verdicts

    @property
    def ok(self) -> bool:
        return self.error is None and (self.verdicts is None or all(v.met for v in self.verdicts))

    def to_dict(self) -> dict:
        latency = self.results.get("latency_us") or {}
        return {"name": self.board.name, "port": self.board.port, "profile": self.board.profile,
                "board": (self.results.get("device") or {}).get("board"), "ok": self.ok, "error": self.error,
                "latency_median_us": latency.get("median"), "arena_used_bytes": self.results.get("arena_used_bytes"),
                **({"verdicts": [v.to_dict() for v in self.verdicts]} if self.verdicts is not None else {})}


def load_farm(path: str | Path) -> list[FarmBoard]:
    """The boards of a farm file (module docstring), every problem reported at once.

    Raises:
        BadInput: the file is missing, not TOML, or a board entry is incomplete or repeated.
    """
    import tomllib
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"--farm {path}: no such farm file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"--farm {path}: not a TOML farm file ({exc})") from exc
    entries = raw.get("board")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise BadInput(f"--farm {path}: no [[board]] tables (each with name and port)")
    problems, boards = [], []
    for i, entry in enumerate(entries):
        name, port = entry.get("name"), entry.get("port")
        profile, reset = entry.get("profile"), entry.get("reset", "rts")
        unknown = sorted(set(entry) - {"name", "port", "profile", "reset"})
        if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > NAME_MAX:
            problems.append(f"board {i + 1}: {_given('name', name)} "
                            f"(letters, digits, '_', '.', '-', at most {NAME_MAX}; it names a folder)")
        if not isinstance(port, str) or not port:
            problems.append(f"board {i + 1}: {_given('port', port)} (a device path or pyserial URL)")
        else:
            try:
                check_port(port, f"board {i + 1}: port")
            except BadInput as exc:
                problems.append(str(exc))
        if profile is not None and not isinstance(profile, str):
            problems.append(f"board {i + 1}: profile {profile!r} (a board profile's name)")
        if reset not in RESETS:
            problems.append(f"board {i + 1}: reset {reset!r} (accepted: {', '.join(RESETS)})")
        if unknown:
            problems.append(f"board {i + 1}: unknown keys {', '.join(unknown)} (accepted: name, port, profile, reset)")
        boards.append(FarmBoard(str(name), str(port), profile, str(reset)))
    names = [b.name for b in boards]
    problems += [f"name '{n}' is used by {names.count(n)} boards" for n in sorted(set(names)) if names.count(n) > 1]
    if problems:
        raise BadInput(f"--farm {path}: " + "; ".join(problems))
    return boards


def _given(key: str, value) -> str:
    """A farm file's value for the error message: 'no port', or 'port 5'."""
    return f"no {key}" if value is None else f"{key} {value!r}"


def from_ports(ports: list[str]) -> list[FarmBoard]:
    """A farm of the boards on these ports, named board1, board2, ...

    Raises:
        BadInput: a port tinydeploy can't open (tinydeploy.core.ports).
    """
    return [FarmBoard(f"board{i + 1}", check_port(port)) for i, port in enumerate(ports)]


def run(boards: list[FarmBoard], out: str | Path, job, force: bool = False) -> list[FarmRow]:
    """job(board, folder) -> FarmRow for every board at once, each in its own thread, into
    OUT/NAME; a job that raises fails its own row only. OUT/farm.json is written at the end
    (force: over one that tinydeploy did not write)."""
    from tinydeploy.core.outputs import run_folder
    with run_folder(out, [SUMMARY], force) as folder:
        return _run(boards, folder, job)


def _run(boards: list[FarmBoard], out: Path, job) -> list[FarmRow]:
    from tinydeploy.core.outputs import write_atomically
    rows: dict[str, FarmRow] = {}

    def one(board: FarmBoard) -> None:
        try:
            rows[board.name] = job(board, out / board.name)
        except TinyDeployError as exc:
            rows[board.name] = FarmRow(board, _saved(out / board.name), str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug in one board's run must not take the others down
            rows[board.name] = FarmRow(board, _saved(out / board.name), f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one, args=(board,), name=f"farm-{board.name}") for board in boards]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = [rows[board.name] for board in boards]
    write_atomically(out / SUMMARY, json.dumps(summary(ordered), indent=2))
    return ordered


def _saved(folder: Path) -> dict:
    """What a board's bench saved before it stopped (results.json), if anything valid
    (tinydeploy.core.results_schema): a damaged file gives nothing to judge."""
    from tinydeploy.core.results_schema import validate
    try:
        return validate(json.loads((folder / "results.json").read_text(encoding="utf-8")), folder / "results.json")
    except (OSError, ValueError, TinyDeployError):
        return {}


def bench_job(**bench_options):
    """A farm job that benches a board as `bench` does (tinydeploy.device.bench.bench), and checks the
    board profile it reports where the farm file names one."""
    from tinydeploy.device.bench import bench

    def job(board: FarmBoard, folder: Path) -> FarmRow:
        result = bench(board.port, folder, reset=board.reset == "rts", **bench_options).to_dict()
        reported = (result.get("device") or {}).get("board")
        if board.profile and reported != board.profile:
            return FarmRow(board, result, f"the device reports board '{reported}', the farm file says "
                                          f"'{board.profile}'")
        return FarmRow(board, result)
    return job


def flash_job(firmware: str | Path, chip: str | None = None, offset: int = 0x10000, board_profile=None,
              force: bool = False):
    """A farm job that writes a prebuilt image to a board with esptool (tinydeploy.toolchain.flash.
    flash_firmware), its log in OUT/NAME/flash.log; the chip is `chip`, or the board profile's."""
    from tinydeploy.core.outputs import run_folder
    from tinydeploy.toolchain.flash import flash_firmware

    def job(board: FarmBoard, folder: Path) -> FarmRow:
        with run_folder(folder, ["flash.log"], force) as checked:
            log = flash_firmware(firmware, chip, board.port, offset, log_path=checked / "flash.log",
                                 board=board_profile)
        return FarmRow(board, {"flash_log": str(log)})
    return job


def flash_then(flash, then):
    """A farm job that flashes a board and then runs `then` on it; a board whose flash fails
    fails its own row (with esptool's reason) and is not benched."""

    def job(board: FarmBoard, folder: Path) -> FarmRow:
        flashed = flash(board, folder)
        row = then(board, folder)
        row.results = {**flashed.results, **row.results}
        return row
    return job


def verify_job(targets, min_agreement: float, **bench_options):
    """A farm job that benches a board (bench_job) and judges its results against the targets
    (tinydeploy.device.verify), a failed run included: it misses them."""
    from tinydeploy.device.verify import verify as judge
    benched = bench_job(**bench_options)

    def job(board: FarmBoard, folder: Path) -> FarmRow:
        try:
            row = benched(board, folder)
        except TinyDeployError as exc:
            row = FarmRow(board, _saved(folder), str(exc))
        row.verdicts = judge(row.results, targets, min_agreement) if row.results else None
        return row
    return job


def verdicts(rows: list[FarmRow]) -> list:
    """Every board's verdicts, each named after its board ("s3-a latency"), and a miss named
    "BOARD run" for a board that failed (before any figure, or part-way)."""
    from tinydeploy.core.targets import TargetResult
    judged = []
    for row in rows:
        judged += [replace(v, name=f"{row.board.name} {v.name}") for v in row.verdicts or []]
        if row.error or row.verdicts is None:
            judged.append(TargetResult(f"{row.board.name} run", 0, 1, "", "measured", at_least=True,
                                       detail=f"{row.board.name} failed: {row.error or 'no verdicts'}"))
    return judged


def summary(rows: list[FarmRow]) -> dict:
    """Every row, and per board profile the median of the boards' median latencies and their
    spread (largest minus smallest), over the boards that answered."""
    groups: dict[str, list[float]] = {}
    for row in rows:
        median = (row.results.get("latency_us") or {}).get("median")
        if row.error is None and isinstance(median, (int, float)):
            groups.setdefault(row.to_dict()["board"] or "?", []).append(float(median))
    aggregate = [{"board": board, "boards": len(values), "median_of_medians_us": statistics.median(values),
                  "spread_us": max(values) - min(values)} for board, values in sorted(groups.items())]
    return {"boards": [row.to_dict() for row in rows], "aggregate": aggregate,
            "ok": all(row.ok for row in rows), "failed": [row.board.name for row in rows if not row.ok]}
