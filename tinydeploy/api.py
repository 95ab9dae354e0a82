"""The Python API: one function per command, of the same name and with the same defaults
(`tinydeploy render` is ``api.render``, `tinydeploy virtual-device` is
``api.virtual_device``). The CLI parses its options, calls these and shows what they
return; docs/api.md shows them at work. They raise tinydeploy.core.errors.BadInput for bad
input and StepFailed for a failed step, and return verdicts rather than raising when a
target is missed.

Every path and port an option names is checked here, where it enters
(tinydeploy.core.outputs.checked_path, tinydeploy.core.ports.check_port): a name the file
system can't hold, or a port URL tinydeploy can't open, is BadInput naming the option.
Functions that write into a folder take force: without it, they never write over a file
tinydeploy did not write there (tinydeploy.core.outputs.claim).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tinydeploy.core.boards import DEFAULT_BOARD, Board, get_board, load_boards
from tinydeploy.core.bounds import check
from tinydeploy.core.errors import BadInput
from tinydeploy.core.names import TFLM
from tinydeploy.core.outputs import checked_path
from tinydeploy.core.ports import check_port
from tinydeploy.core.targets import Targets

Progress = Callable[[str, dict], None]


def _board(board: str | Board, boards_dir: tuple[str, ...] = ()) -> Board:
    return board if isinstance(board, Board) else get_board(board, tuple(boards_dir))


POSITIONAL = ("model", "dir", "results")  # arguments, not options


def _paths(**paths) -> None:
    """Check each path (None: not given) where it enters, named as its option (out: --out)."""
    for name, value in paths.items():
        checked_path(value, name if name in POSITIONAL else "--" + name.replace("_", "-"))


def boards(boards_dir: tuple[str, ...] = ()) -> dict[str, Board]:
    """Every board profile: the shipped ones, $TINYDEPLOY_BOARDS's and boards_dir's."""
    return load_boards(tuple(boards_dir))


def inspect(model: str | Path, board: str | Board = DEFAULT_BOARD, targets: Targets = Targets(),
            framework: str | None = None, boards_dir: tuple[str, ...] = ()):
    """What a .tflite model costs on a board (tinydeploy.runtime.inspect.InspectReport); framework picks
    the board's TFLM kernel library (default: the board profile's framework). Its energy figures are
    estimated at targets.rate_hz, with the highest rate within targets.power_budget_mw."""
    from tinydeploy.codegen.frameworks import framework_for
    from tinydeploy.runtime.inspect import inspect as inspect_model
    checked_path(model, "model")
    board = _board(board, boards_dir)
    if framework is not None:
        framework_for(board, framework, TFLM)  # one that builds TFLM firmware for this board
    return inspect_model(model, board, targets, framework)


def start_arch(arch: str | Path | None = None, search: str | Path | None = None):
    """The architecture optimize starts from: an Arch JSON file, a search's best_arch.json, or None
    (the default for the data's shape)."""
    from tinydeploy.optimize.architectures import Arch
    checked_path(arch, "--arch")
    checked_path(search, "--search")
    if arch and search:
        raise BadInput("give --arch or --search, not both")
    if search:
        return Arch.load(Path(search) / "best_arch.json")
    return Arch.load(arch) if arch else None


def optimize(data: str, out: str | Path, board: str | Board = DEFAULT_BOARD, targets: Targets = Targets(),
             test: str | None = None, min_accuracy: float | None = None, budget: str = "default",
             stages: tuple[str, ...] | None = None, arch: str | Path | None = None, search: str | Path | None = None,
             force: bool = False, image_size: int = 32, seed: int = 0, boards_dir: tuple[str, ...] = (),
             progress: Progress | None = None, front_end: str | Path = "auto", framework: str | None = None):
    """Train and optimize a model on data until its int8 form fits the board
    (tinydeploy.optimize.OptimizeReport; OUT/model.tflite, report.json and report.html).
    front_end: "auto" (chosen per dataset), "none", or a SPEC or JSON file that pins one
    (tinydeploy.optimize.frontend_choice; docs/frontend.md). framework: the firmware's (default:
    the board's); arduino's FULLY_CONNECTED makes dense layers convert per tensor."""
    from tinydeploy.core import data as data_lib
    from tinydeploy.optimize import STAGES, OptimizeConfig, check_stages
    from tinydeploy.optimize import optimize as run
    _paths(data=data, out=out, test=test)
    stages, start = check_stages(list(stages or STAGES)), start_arch(arch, search)  # cheap checks first
    front_end = searched_front_end(search, front_end)
    _front_end_spec(front_end)
    dataset = data_lib.load(data, image_size=image_size, seed=seed)
    if test:
        dataset = data_lib.add_test(dataset, test)  # checked before any training
    config = OptimizeConfig(data=dataset, out=out, board=_board(board, boards_dir), targets=targets,
                            min_accuracy=min_accuracy, budget=budget, seed=seed, stages=stages, force=force,
                            arch=start, data_source=data, framework=framework)
    return run(config, progress, front_end=front_end)


def searched_front_end(search: str | Path | None, front_end: str | Path) -> str | Path:
    """The front end optimize --search runs: the one the search's candidates trained behind
    (best_arch.json's front_end) when --front-end is auto; a different pinned one is refused,
    since the architecture was chosen for the search's features."""
    from tinydeploy.core.outputs import read_json
    from tinydeploy.optimize.frontend_choice import AUTO, parse_spec, to_spec
    if not search:
        return front_end
    recorded = read_json(Path(search) / "best_arch.json", "no such search result")
    spec = recorded.get("front_end") if isinstance(recorded, dict) else None
    if spec is None:  # a search from before front ends: its candidates took the raw window
        return front_end
    if str(front_end).strip().lower() == AUTO:
        return spec
    if to_spec(parse_spec(str(front_end))) != to_spec(parse_spec(spec)):  # the same front end, however written
        raise BadInput(f"--front-end {front_end!r} differs from the front end the search in {search} trained its "
                       f"candidates behind ({spec!r}): leave --front-end out (auto takes the search's), or search "
                       "again with the front end you want")
    return front_end


def _front_end_spec(front_end) -> None:
    """Check --front-end before any data is loaded (its fit to the windows is checked later)."""
    from tinydeploy.optimize.frontend_choice import AUTO, parse_spec
    if str(front_end).strip().lower() != AUTO:
        parse_spec(str(front_end))


def evaluate(model: str | Path, data: str, image_size: int = 32, seed: int = 0) -> dict:
    """The int8 accuracy of a .tflite model on raw labelled data, on the TFLM interpreter."""
    from tinydeploy.runtime.evaluate import evaluate_file
    _paths(model=model, data=data)
    return evaluate_file(model, data, image_size=image_size, seed=seed)


def render(model: str | Path, board: str | Board, out: str | Path, framework: str | None = None,
           arena_margin: float = 10.0, labels: str | Path | None = None, engine: str | None = None,
           boards_dir: tuple[str, ...] = (), force: bool = False, model_partition: bool = False,
           duty_cycle_hz: float | None = None, sleep: str | None = None) -> dict:
    """Write a firmware project for an int8 model; returns its summary. framework and engine
    default to the board's own; labels is a text file (one per line) or optimize's report.json;
    force writes over files in out that tinydeploy did not generate; model_partition keeps the
    model in two flash slots (partitions.csv) for `flash --model`; duty_cycle_hz renders the
    duty-cycled firmware (classify, then sleep, in the sleep mode given or of least power)."""
    from tinydeploy.toolchain.project import create_project
    from tinydeploy.codegen.render import RenderOptions, read_labels
    _paths(model=model, out=out, labels=labels)
    options = RenderOptions(framework, arena_margin, read_labels(labels) if labels else (), engine,
                            model_partition=model_partition, duty_cycle_hz=duty_cycle_hz, sleep=sleep)
    return create_project(model, _board(board, boards_dir), out, options, force)


def export(model: str | Path, kind: str, out: str | Path, engine: str | None = None, name: str | None = None,
           labels: str | Path | None = None, data: str | None = None, window: int | None = None,
           hop: int | None = None, smoothing: int = 1, board: str | Board = DEFAULT_BOARD,
           arena_margin: float = 10.0, boards_dir: tuple[str, ...] = (), force: bool = False,
           model_partition: bool = False) -> dict:
    """Write the model as a library for the user's own application (an ESP-IDF component, an
    Arduino/PlatformIO library or a plain C library: tinydeploy.codegen.library.KINDS); returns
    its summary. name (default: the model file's name) prefixes every symbol; labels as for
    render; data gives the example's windows ('digits', a .npz or .csv); window, hop and
    smoothing set the streaming API's defaults; board sizes a TFLM arena; model_partition keeps
    the model in two flash slots that the application updates (docs/model-update.md)."""
    from tinydeploy.codegen.library import ExportOptions
    from tinydeploy.codegen.render import read_labels
    from tinydeploy.toolchain.export import create_library
    _paths(model=model, out=out, labels=labels)
    if data is not None and data != "digits":
        checked_path(data, "--data")
    options = ExportOptions(kind, engine, name or Path(model).stem, read_labels(labels) if labels else (),
                            window, hop, smoothing, arena_margin, model_partition=model_partition)
    return create_library(model, _board(board, boards_dir), out, options, data, force)


def build(dir: str | Path, env: str | None = None, on_line: Callable[[str], None] | None = None):
    """Compile a rendered project (tinydeploy.toolchain.build.BuildResult)."""
    from tinydeploy.toolchain.build import build as build_project
    checked_path(dir, "dir")
    return build_project(dir, env, on_line)


def emulate(dir: str | Path, tcp: int = 0, model: str | Path | None = None):
    """Boot a built project for an emulated board (a running tinydeploy.device.emulate.Emulator; use it
    as a context manager, or call stop()). model: for a firmware rendered with --model-partition, a
    model image (`package`) to boot with, written to slot A of a freshly erased flash; without it the
    flash stays as the last run left it."""
    from tinydeploy.device.emulate import start
    checked_path(dir, "dir")
    checked_path(model, "--model")
    return start(dir, tcp, model)


def flash(dir: str | Path | None = None, port: str | None = None, env: str | None = None,
          firmware: str | Path | None = None, chip: str | None = None, board: str | Board | None = None,
          offset: int = 0x10000, on_line: Callable[[str], None] | None = None,
          boards_dir: tuple[str, ...] = ()) -> Path:
    """Upload a project (PlatformIO) or, with firmware=, a prebuilt image (esptool, with chip= or
    board=); returns the log's path."""
    from tinydeploy.toolchain.flash import flash as flash_project
    from tinydeploy.toolchain.flash import flash_firmware
    _paths(dir=dir, firmware=firmware)
    if port is not None:
        check_port(port)
    if firmware:
        if not chip and not board:
            raise BadInput("--firmware needs --chip (e.g. esp32s3) or --board")
        return flash_firmware(firmware, chip, port, offset, on_line=on_line,
                              board=_board(board, boards_dir) if board else None)
    if board:
        raise BadInput("--board is for --firmware; a project folder was rendered for its board")
    if not dir:
        raise BadInput("give a project folder (tinydeploy flash DIR) or --firmware BIN --chip C")
    return flash_project(dir, port, env, on_line)


def validation_samples(data: str | None, validate: int, image_size: int = 32, seed: int = 0):
    """The first `validate` labelled samples of data, (x, y), or None when validate is 0."""
    check("--validate", validate)
    checked_path(data, "--data")
    if not validate:
        return None
    if not data:
        raise BadInput("--validate N needs --data (labelled samples)")
    from tinydeploy.core import data as data_lib
    x, y = data_lib.load(data, image_size=image_size, seed=seed).all_samples
    return x[:validate], y[:validate]


def bench(port: str, out: str | Path = "bench-results", baud: int = 115200, runs: int = 20, warmup: int = 2,
          validate: int = 0, data: str | None = None, expect_model: str | Path | None = None, timeout: float = 10.0,
          image_size: int = 32, seed: int = 0, profile: bool = False,
          progress: Callable[[int, int], None] | None = None, force: bool = False, power_monitor: str | None = None,
          power_voltage: float = 3.3, min_agreement: float | None = 1.0, boards_dir: tuple[str, ...] = ()):
    """Measure latency and RAM on a board over serial, validate `validate` labelled samples of
    data there, and with profile time each layer (tinydeploy.device.bench.BenchResult; OUT/results.json
    and serial.log; force writes over files there that tinydeploy did not write). With power_monitor
    (KIND[:PORT], tinydeploy.device.power) the timed runs are recorded and the measured energy per
    inference is stored (OUT/power.npz holds the samples). A validated device that agrees with the
    host on fewer samples than min_agreement (default: all) fails the run (StepFailed, results
    saved); None judges nothing. Per-layer estimates use the profiles of boards_dir too."""
    from tinydeploy.device.bench import bench as run
    check_port(port)
    _paths(out=out, expect_model=expect_model)
    if boards_dir:
        load_boards(tuple(boards_dir))  # a bad profile is bad input now, not a missing estimate later
    return run(port, out, baud=baud, runs=runs, warmup=warmup, expect_model=expect_model,
               samples=validation_samples(data, validate, image_size, seed), timeout=timeout, progress=progress,
               profile=profile, force=force, power_monitor=power_monitor, power_voltage=power_voltage,
               min_agreement=min_agreement, boards_dir=tuple(boards_dir))


def bench_farm(boards, out: str | Path = "bench-results", baud: int = 115200, runs: int = 20, warmup: int = 2,
               validate: int = 0, data: str | None = None, expect_model: str | Path | None = None,
               timeout: float = 10.0, image_size: int = 32, seed: int = 0, profile: bool = False,
               force: bool = False, power_monitor: str | None = None, power_voltage: float = 3.3,
               min_agreement: float | None = 1.0, boards_dir: tuple[str, ...] = ()):
    """Bench several boards in parallel (tinydeploy.device.farm): boards is a farm file, a list of
    ports or a list of tinydeploy.device.farm.FarmBoard. Each board's results go to OUT/NAME/ as
    bench writes them, and OUT/farm.json sums them up; returns the rows (a failed board fails its
    own row only, a board that disagrees with the host below min_agreement too). A power monitor
    measures one board: power_monitor is refused here."""
    from tinydeploy.device import farm
    boards = _farm_boards(boards)
    if boards_dir:
        load_boards(tuple(boards_dir))
    options = _farm_options(baud=baud, runs=runs, warmup=warmup, validate=validate, data=data,
                            expect_model=expect_model, timeout=timeout, image_size=image_size, seed=seed,
                            profile=profile, force=force, power_monitor=power_monitor,
                            power_voltage=power_voltage, min_agreement=min_agreement, boards_dir=tuple(boards_dir))
    return farm.run(boards, checked_path(out, "--out"), farm.bench_job(**options), force)


def verify_farm(boards, targets: Targets = Targets(), min_agreement: float = 1.0,
                out: str | Path = "bench-results", junit: str | Path | None = None, force: bool = False,
                **bench_options):
    """Bench every board of a farm in parallel, as bench_farm does (with its options), and judge
    each against the targets: the rows, each with its verdicts. With junit, JUnit XML is written
    there whatever happens: a test case per board and target, a failed board's run a failing
    one, and a farm that could not start one failing case naming why."""
    from tinydeploy.device import farm

    def run():
        check("--min-agreement", min_agreement)
        board_list = _farm_boards(boards)
        job = farm.verify_job(targets, min_agreement, **_farm_options(**bench_options, force=force))
        rows = farm.run(board_list, checked_path(out, "--out"), job, force)
        return farm.verdicts(rows), rows
    return _with_junit(junit, "farm", run)[1]


def flash_farm(boards, firmware: str | Path, chip: str | None = None, board: str | Board | None = None,
               offset: int = 0x10000, out: str | Path = "flash-results", boards_dir: tuple[str, ...] = (),
               force: bool = False):
    """Write a prebuilt image to every board of a farm in parallel (esptool, one thread a board):
    the rows, each board's log in OUT/NAME/flash.log (a board that fails fails its own row)."""
    from tinydeploy.device import farm
    if not chip and not board:
        raise BadInput("--firmware needs --chip (e.g. esp32s3) or --board")
    check("--offset", offset)  # before any board's job: a bad address would fail every row alike
    _paths(firmware=firmware, out=out)
    boards = _farm_boards(boards)
    profile = _board(board, boards_dir) if board else None
    return farm.run(boards, out, farm.flash_job(firmware, chip, offset, profile, force), force)


def _farm_boards(boards) -> list:
    """The boards of a farm file, of a list of ports (named board1, board2...), or a list of FarmBoard."""
    from tinydeploy.device import farm
    if isinstance(boards, (str, Path)):
        return farm.load_farm(checked_path(boards, "--farm"))
    boards = list(boards)
    return farm.from_ports(boards) if all(isinstance(b, str) for b in boards) else boards


def _farm_options(validate: int = 0, data: str | None = None, image_size: int = 32, seed: int = 0, progress=None,
                  **options) -> dict:
    """bench's options for every board of a farm, checked once (a bad one would fail every row
    alike): the labelled samples loaded once, and no per-sample progress (the boards' lines
    would interleave)."""
    if options.pop("power_monitor", None) is not None:
        raise BadInput("--power-monitor measures one board: bench it with one --port, not a farm")
    check("--power-voltage", options.pop("power_voltage", 3.3))
    for name in ("baud", "runs", "warmup", "timeout"):
        if name in options:
            check(f"--{name}", options[name])
    checked_path(options.get("expect_model"), "--expect-model")
    return {**options, "samples": validation_samples(data, validate, image_size, seed)}


def calibrate(results: list[str | Path], board: str | Board, out: str | Path = "calibrated-boards",
              boards_dir: tuple[str, ...] = (), force: bool = False):
    """Fit the board's per-operator costs on `bench --profile` runs and write OUT/BOARD.toml, a
    profile that later commands use with --boards-dir OUT (tinydeploy.device.calibrate.Calibration);
    force writes over an OUT/BOARD.toml that tinydeploy did not write."""
    from tinydeploy.device.calibrate import calibrate as fit
    for path in results:
        checked_path(path, "results")
    checked_path(out, "--out")
    return fit(list(results), _board(board, boards_dir), out, force)


def verify(results: str | Path | None = None, port: str | None = None, targets: Targets = Targets(),
           min_agreement: float = 1.0, out: str | Path = "bench-results", junit: str | Path | None = None,
           force: bool = False, board: str | Board | None = None, boards_dir: tuple[str, ...] = (),
           expect_version: str | None = None, **bench_options):
    """Judge bench results (a results.json or its folder, checked against the results schema), or
    a fresh bench of the board on port, against the targets: (verdicts, the results judged).
    With junit, JUnit XML is written there whatever happens: a test case per target, or one
    failing case naming why the run or the results could not be judged. Energy targets judge the
    results' power measurement where there is one, else an estimate from their latency and the
    [power] figures of board (default: the profile the results' device names)."""
    from tinydeploy.device.verify import load_results, results_board
    from tinydeploy.device.verify import verify as judge

    def run():
        check("--min-agreement", min_agreement)
        if expect_version is not None:
            from tinydeploy.core.image import check_version
            check_version(expect_version, "--expect-version")
        if results and port:
            raise BadInput("give either a results file or --port, not both")
        profile = _board(board, boards_dir) if board else None
        if port:
            bench(port, out, force=force, min_agreement=None, boards_dir=boards_dir, **bench_options)  # judged below
            source = out
        elif not results:
            raise BadInput("give a results file (from tinydeploy bench --out DIR) or --port")
        else:
            source = checked_path(results, "results")
        loaded = load_results(source)
        profile = profile or results_board(loaded, tuple(boards_dir))
        return judge(loaded, targets, min_agreement, board=profile, expect_version=expect_version), loaded
    return _with_junit(junit, "run" if port else "results", run)


def _with_junit(junit: str | Path | None, failed_case: str, run: Callable[[], tuple[list, object]]):
    """run() -> (verdicts, anything); with junit, the verdicts are written there as JUnit XML,
    or, when run raises, one failing test case named failed_case that says why."""
    if junit is None:
        return run()
    from tinydeploy.core.outputs import write_atomically
    from tinydeploy.device.verify import failed_run, junit_xml
    folder = Path(checked_path(junit, "--junit")).parent
    if not folder.is_dir():
        raise BadInput(f"--junit {junit}: no folder {folder} to write it in")
    try:
        verdicts, value = run()
    except Exception as exc:  # noqa: BLE001 - CI reads the file: it must say why there are no verdicts
        write_atomically(Path(junit), junit_xml([failed_run(failed_case, exc)]))
        raise
    write_atomically(Path(junit), junit_xml(verdicts))
    return verdicts, value


def junit_refusal(junit: str | Path | None, case: str, error: Exception) -> bool:
    """Write JUnit XML with one failing test case named case that says why a run was refused
    before it started (a usage conflict): CI that asked for the file finds it. Nothing is written
    where junit is None or names no writable place (that problem is not the one reported).

    Returns:
        Whether the file was written.
    """
    if junit is None:
        return False
    from tinydeploy.core.outputs import write_atomically
    from tinydeploy.device.verify import failed_run, junit_xml
    try:
        target = Path(checked_path(junit, "--junit"))
        if not target.parent.is_dir():
            return False
        write_atomically(target, junit_xml([failed_run(case, error)]))
    except (BadInput, OSError):
        return False
    return True


def virtual_device(model: str | Path, baud: int | None = None, slots: str | Path | None = None,
                   version: str | None = None):
    """A stand-in board for a model (tinydeploy.device.virtual_device.VirtualDevice): call open_pty() or
    open_tcp(port) for its address, close() when done. With slots (a folder standing for its
    flash) it is a firmware rendered with --model-partition: the model runs from slot A or B and
    a new one can be uploaded over serial (flash --model IMAGE --serial)."""
    from tinydeploy.device.virtual_device import VirtualDevice
    checked_path(model, "model")
    if slots is not None:
        checked_path(slots, "--slots")
    if version is not None:
        from tinydeploy.core.image import check_version
        check_version(version, "--model-version")
    return VirtualDevice(model, baud=baud, slots=slots, version=version)


def package(model: str | Path, version: str, out: str | Path, force: bool = False) -> dict:
    """A model image for a flash slot (tinydeploy.core.image): header (version, ops, arena per
    kernel library, I/O, labels), the model, CRC-32; written to out. Returns the header."""
    from tinydeploy.codegen.package import package as pack
    from tinydeploy.core import image
    from tinydeploy.core.model import load_model
    from tinydeploy.core.outputs import run_folder, write_atomically
    _paths(model=model, out=out)
    image.check_version(version)
    data = pack(load_model(model), version)
    target = Path(out)
    with run_folder(target.parent if str(target.parent) else ".", [target.name], force) as folder:
        write_atomically(folder / target.name, data)
    return {"out": str(target), "bytes": len(data), **image.parse(data, str(target)).header.to_dict()}


def flash_model(image_path: str | Path, dir: str | Path | None = None, port: str | None = None,
                serial: bool = False, dry_run: bool = False, baud: int = 115200, log: str | Path | None = None,
                on_line: Callable[[str], None] | None = None) -> dict:
    """A model image into the inactive slot of a --model-partition firmware: with esptool at the
    offsets of DIR's partition table (dry_run: only check it fits DIR's firmware), or with
    serial=True through the application's serial protocol (the device checks it)."""
    _paths(dir=dir)
    checked_path(image_path, "--model")
    if port is not None:
        check_port(port)
    if serial:
        from tinydeploy.device.model_upload import upload_model
        if dry_run:
            raise BadInput("--dry-run checks an image against a project folder's firmware (DIR), not over --serial")
        if not port:
            raise BadInput("--serial needs --port (the application's serial port)")
        return upload_model(port, image_path, Path(log or Path(image_path).with_suffix(".upload.log")), baud)
    if not dir:
        raise BadInput("flash --model needs the project folder the firmware was rendered to (its partition table "
                       "and contract), or --serial --port P")
    from tinydeploy.toolchain.model_flash import flash_model as write_slot
    return write_slot(dir, image_path, port, on_line, dry_run)


def deploy(data: str, board: str | Board = DEFAULT_BOARD, out: str | Path = "build/deploy", port: str | None = None,
           targets: Targets = Targets(), budget: str = "default", min_agreement: float = 1.0, image_size: int = 32,
           seed: int = 0, boards_dir: tuple[str, ...] = (), progress: Progress | None = None,
           stages: tuple[str, ...] | None = None, farm=None, force: bool = False, front_end: str | Path = "auto",
           min_accuracy: float | None = None):
    """optimize (its stages, default all), render, build, flash, bench and verify in one go
    (tinydeploy.flows.deploy.DeployReport); with farm= (a farm file, ports or FarmBoards), the built
    image is flashed to every board of the farm and each is benched and judged, in parallel. force
    starts over (optimize's stages redone) and writes over files in out that tinydeploy did not write.
    front_end and min_accuracy are optimize's: without min_accuracy the chosen model must pass the
    default accuracy checks (above chance, not clearly below 1-NN), or deploy ends missed."""
    from tinydeploy.core import data as data_lib
    from tinydeploy.flows.deploy import deploy as run
    from tinydeploy.optimize import STAGES, check_stages
    stages = check_stages(list(stages or STAGES))
    check("--min-agreement", min_agreement)
    if min_accuracy is not None:
        check("--min-accuracy", min_accuracy)
    _front_end_spec(front_end)
    _paths(data=data, out=out)
    if port is not None:
        check_port(port)
    profile = _board(board, boards_dir)
    boards = _farm_boards(farm) if farm is not None else None
    if boards is not None and port:
        raise BadInput("give --farm or --port, not both")
    if boards is not None and profile.emulated:
        raise BadInput(f"--farm flashes physical boards; {profile.name} is emulated (deploy runs it in its emulator)")
    dataset = data_lib.load(data, image_size=image_size, seed=seed)
    return run(dataset, data, profile, out, targets, port=port, budget=budget, seed=seed,
               min_agreement=min_agreement, progress=progress, stages=stages, farm=boards, force=force,
               front_end=front_end, min_accuracy=min_accuracy)


def search(data: str = "digits", out: str | Path = "build/search", board: str | Board = DEFAULT_BOARD,
           targets: Targets = Targets(), trials: int | None = None, timeout: float | None = None,
           storage: str | None = None, study: str = "tinydeploy", join: bool = False, budget: str = "fast",
           image_size: int = 32, seed: int = 0, boards_dir: tuple[str, ...] = (), progress: Progress | None = None,
           force: bool = False, optuna_log: bool = False, front_end: str | Path = "auto"):
    """Hardware-aware architecture search within the budgets (a summary; OUT/best_arch.json, search.html;
    force writes over files there that tinydeploy did not write). A candidate that fails is that
    trial's failure (in the summary's failed_trials), and the search goes on; optuna_log shows
    Optuna's own log with their tracebacks. front_end: as optimize's; the candidates train behind
    it, and best_arch.json records it for `optimize --search`."""
    from tinydeploy.core import data as data_lib
    from tinydeploy.optimize.search import SearchConfig
    from tinydeploy.optimize.search import search as run
    _paths(data=data, out=out)
    _front_end_spec(front_end)
    dataset = data_lib.load(data, image_size=image_size, seed=seed)
    config = SearchConfig(dataset, Path(out), _board(board, boards_dir), targets, trials=trials, timeout=timeout,
                          storage=storage, study=study, seed=seed, join=join, budget=budget, force=force,
                          optuna_log=optuna_log, front_end=str(front_end))
    return run(config, progress)


def arch_cost(arch: str | Path, data: str = "digits", board: str | Board = DEFAULT_BOARD, image_size: int = 32,
              seed: int = 0, boards_dir: tuple[str, ...] = ()):
    """`search --show`: an architecture and what it costs on the board, untrained: (Arch, figures).
    A search's best_arch.json is costed on the features of the front end it records (the
    network's share; the front end's own cost is in the search's summary)."""
    from tinydeploy.core import data as data_lib
    from tinydeploy.core.outputs import read_json
    from tinydeploy.optimize.architectures import Arch
    from tinydeploy.optimize.frontend_choice import feature_dataset, fitted, parse_spec
    from tinydeploy.optimize.search import cost
    _paths(show=arch, data=data)
    spec = Arch.load(arch)
    dataset = data_lib.load(data, image_size=image_size, seed=seed)
    raw = read_json(Path(arch), "no such architecture file")
    front = parse_spec(raw["front_end"]) if isinstance(raw, dict) and raw.get("front_end") else None
    if front is not None:
        dataset = feature_dataset(fitted(front, dataset), dataset)
    return spec, cost(spec, dataset, _board(board, boards_dir))
