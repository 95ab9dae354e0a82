"""The `tinydeploy` command. Each subcommand parses its arguments, calls the
library function of the same name, and shows the result. Exit codes are
decided here and only here: 0 ok, 1 a target missed or a step failed, 2 bad
input or usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinydeploy import __version__, api
from tinydeploy.core.errors import (EXIT_FAILED, EXIT_OK, BadInput, StepFailed, TargetMissed, TinyDeployError,
                               extra_missing)
from tinydeploy.core.boards import DEFAULT_BOARD
from tinydeploy.core.bounds import BOUNDS
from tinydeploy.core.names import TFLM
from tinydeploy.core.targets import require_met


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors raised as BadInput so that they exit 2 through main's one
    path (and give a JSON document with --json) instead of argparse's own exit."""

    def error(self, message):
        raise BadInput(f"{message} (see: {self.prog} --help)")


def _bounded(option: str):
    """An argparse type for option, from its bound in tinydeploy.core.bounds: a value of the
    bound's kind within it, named in the message when it is not."""
    bound = BOUNDS[option]

    def parse(text: str):
        value = bound.read(text)
        if value is None:
            raise argparse.ArgumentTypeError(f"'{text}' is not {bound.accepted()}")
        if not bound.accepts(value):
            raise argparse.ArgumentTypeError(f"{text} is out of range: {bound.accepted()}")
        return value
    parse.bound = bound  # which bound the option reads (tests/test_bounds.py)
    return parse


def _text_arg(what: str):
    """An argparse type for a path or name that must not be empty."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"empty: give {what}")
        return text
    return parse


FOLDER = _text_arg("a folder")
FILE = _text_arg("a file")


def _write_option_file(path: str, text: str, option: str) -> None:
    """Write a file the user named with an option (--junit, --port-file)."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"{option} {path}: can't write it ({exc.strerror or exc})") from exc


def _console():
    from rich.console import Console
    console = Console()
    if not console.is_terminal:  # piped or captured: don't cut tables at 80 columns
        console = Console(width=140)
    return console


def _emit_json(args, payload) -> None:
    """Print the command's one JSON document (errors after it add none)."""
    print(json.dumps(payload, indent=2, default=str))
    args.json_emitted = True


def _boards_dir(args) -> tuple[str, ...]:
    return tuple(args.boards_dir)


def _targets(args):
    from tinydeploy.core.targets import DEFAULT_RATE_HZ, Targets
    return Targets(args.max_arena_kb, args.max_model_kb, args.max_latency_ms, getattr(args, "max_energy_uj", None),
                   getattr(args, "max_power_mw", None), getattr(args, "rate_hz", DEFAULT_RATE_HZ))


def cmd_boards(args) -> int:
    boards = api.boards(_boards_dir(args))
    if args.json:
        _emit_json(args, [b.to_dict() for b in boards.values()])
    else:
        from tinydeploy.display import boards_table
        _console().print(boards_table(boards))
    return EXIT_OK


def cmd_inspect(args) -> int:
    report = api.inspect(args.model, args.board, _targets(args), args.framework, _boards_dir(args))
    data = report.to_dict()
    if args.json:
        _emit_json(args, data)
    else:
        from tinydeploy.display import inspect_view
        _console().print(inspect_view(data))
    if report.problems:
        raise BadInput("; ".join(report.problems))
    require_met(report.targets)
    return EXIT_OK


def _progress(args):
    """A progress callback for library functions, or None when quiet or --json."""
    if args.json or getattr(args, "quiet", False):
        from contextlib import nullcontext
        return nullcontext(None)
    from tinydeploy.display import StageProgress
    return StageProgress(_console())


def cmd_optimize(args) -> int:
    with _progress(args) as progress:
        result = api.optimize(args.data, args.out, args.board, _targets(args), test=args.test,
                              min_accuracy=args.min_accuracy, budget=args.budget, stages=tuple(args.stages.split(",")),
                              arch=args.arch, search=args.search, force=args.force, image_size=args.image_size,
                              seed=args.seed, boards_dir=_boards_dir(args), progress=progress,
                              front_end=args.front_end, framework=args.framework)
    if args.json:
        _emit_json(args, result.report)
    elif not args.quiet:
        from tinydeploy.display import optimize_lines, optimize_table
        console = _console()
        console.print(optimize_table(result.report))
        for line in optimize_lines(result.report, args.out):
            console.print(line)
    if not result.met:
        raise TargetMissed(result.explanation())
    return EXIT_OK


def cmd_evaluate(args) -> int:
    result = api.evaluate(args.model, args.data, image_size=args.image_size, seed=args.seed)
    if args.json:
        _emit_json(args, result)
    else:
        through = f" after its front end ({result['frontend']})" if result.get("frontend") else ""
        print(f"{result['model']}: int8 accuracy {result['accuracy'] * 100:.2f}% on {result['samples']} samples "
              f"({result['split']} of {result['data']}), measured on the TFLM interpreter{through}")
    return EXIT_OK


def cmd_render(args) -> int:
    summary = api.render(args.model, args.board, args.out, args.framework, args.arena_margin, args.labels,
                         args.engine, _boards_dir(args), force=args.force, model_partition=args.model_partition,
                         duty_cycle_hz=args.duty_cycle_hz, sleep=args.sleep)
    if args.json:
        _emit_json(args, summary)
        return EXIT_OK
    print(summary["description"])
    if "lower_bound_bytes" in summary:  # a static plan: its arena beside TFLM's and the lower bound
        from tinydeploy.display import engine_arena_table
        _console().print(engine_arena_table(summary))
    print(f"next: tinydeploy build {summary['project']}")
    return EXIT_OK


def cmd_export(args) -> int:
    summary = api.export(args.model, args.kind, args.out, args.engine, args.name, args.labels, args.data,
                         args.window, args.hop, args.smoothing, args.board, args.arena_margin,
                         _boards_dir(args), force=args.force, model_partition=args.model_partition)
    if args.json:
        _emit_json(args, summary)
        return EXIT_OK
    steps, channels = summary["window"]
    print(f"exported {summary['name']} as a {summary['kind']} ({summary['engine']} engine) into {summary['library']}: "
          f"{len(summary['files'])} files; include {summary['header']}; windows of {steps} x {channels} raw values, "
          f"hop {summary['hop']}; {len(summary['labels'])} classes ({', '.join(summary['labels'][:10])})")
    for note in summary["notes"]:
        print(f"note: {note}")
    return EXIT_OK


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def cmd_emulate(args) -> int:
    import signal
    emulator = api.emulate(args.dir, args.tcp, args.model)
    try:
        if args.port_file:
            _write_option_file(args.port_file, emulator.url + "\n", "--port-file")
        if args.json:
            _emit_json(args, {"port": emulator.url, "log": str(emulator.log), "command": emulator.command,
                              "flash": str(emulator.flash) if emulator.flash else None})
        else:
            print(f"emulating {args.dir}: serial port {emulator.url}", flush=True)
            print(f"next: tinydeploy bench --port {emulator.url}   (Ctrl-C stops the emulator)", flush=True)
        signal.signal(signal.SIGTERM, _interrupt)  # stop the emulator in `finally`, as Ctrl-C does
        code = emulator.process.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        emulator.stop()
    if code not in (0, -15):  # -15: stopped by SIGTERM, as asked
        from tinydeploy.core.errors import StepFailed
        raise StepFailed(f"the emulator stopped with code {code}; log {emulator.log}")
    return EXIT_OK


def _line_printer(args):
    """Stream tool output lines unless --json or --quiet."""
    if args.json or getattr(args, "quiet", False):
        return None
    console = _console()
    return lambda line: console.print(line, markup=False, highlight=False)


def cmd_build(args) -> int:
    result = api.build(args.dir, args.env, _line_printer(args))
    summary = {"project": str(args.dir), "log": str(result.log), "firmware": [str(p) for p in result.firmware],
               "size": result.size}
    if args.json:
        _emit_json(args, summary)
    else:
        print(f"built: {', '.join(summary['firmware']) or '(no firmware image found)'}; log {summary['log']}")
        if result.size:
            print(f"size: text (code + constants) {result.size['text']:,} B, data {result.size['data']:,} B, "
                  f"bss {result.size['bss']:,} B")
    return EXIT_OK


def cmd_flash(args) -> int:
    if args.model:
        result = api.flash_model(args.model, args.dir, args.port, serial=args.serial, dry_run=args.dry_run,
                                 on_line=_line_printer(args))
        if args.json:
            _emit_json(args, result)
        elif args.dry_run:
            slots = result["slots"]
            print(f"{args.model}: model {result['image']['version']} fits {args.dir}; it goes to the slot not "
                  f"running: model_a at 0x{slots['a']['offset']:x} or model_b at 0x{slots['b']['offset']:x} "
                  f"({slots['a']['size']:,} B each), state at 0x{slots['state']['offset']:x}")
        elif args.serial:
            print(f"uploaded {result['bytes']:,} B in {result['seconds']:.2f} s ({result['bytes_per_second']:,} B/s): "
                  f"slot {result['slot']} runs {result['version']} (was slot {result['before']['slot']}, "
                  f"{result['before']['version']})")
        else:
            print(f"wrote {args.model} to slot {result['slot']} at 0x{result['slot_offset']:x}, marked to try "
                  f"(state at 0x{result['state_offset']:x}); log {result['log']}")
        return EXIT_OK
    if args.serial or args.dry_run:
        raise BadInput("--serial and --dry-run go with --model IMAGE")
    if args.farm:
        if args.port or args.dir:
            raise BadInput("--farm flashes a prebuilt --firmware BIN to every board of the farm file: give no "
                           "project folder or --port with it")
        if not args.firmware:
            raise BadInput("--farm needs --firmware BIN (the application image `tinydeploy build` made, "
                           "DIR/.pio/build/ENV/firmware.bin) and --chip or --board")
        rows = api.flash_farm(args.farm, args.firmware, args.chip, args.board, args.offset, args.out, _boards_dir(args),
                              force=args.force)
        return _show_farm(args, rows, "Farm flash", saved="flash.log")
    log = api.flash(args.dir, args.port, args.env, args.firmware, args.chip, args.board, args.offset,
                    _line_printer(args), _boards_dir(args))
    if args.json:
        _emit_json(args, {"log": str(log), "ok": True})
    else:
        print(f"flashed; log {log}")
    return EXIT_OK


def cmd_package(args) -> int:
    result = api.package(args.model, args.version, args.out, force=args.force)
    if args.json:
        _emit_json(args, result)
    else:
        arena = ", ".join(f"{k} {v:,} B" for k, v in result["arena"].items()) or "not measured"
        print(f"{result['out']}: model {result['version']}, {result['bytes']:,} B, ops {', '.join(result['ops'])}; "
              f"arena {arena}")
        print(f"next: tinydeploy flash DIR --model {result['out']} --dry-run")
    return EXIT_OK


def cmd_search(args) -> int:
    if args.show:
        arch, figures = api.arch_cost(args.show, args.data, args.board, args.image_size, args.seed, _boards_dir(args))
        if args.json:
            _emit_json(args, {"arch": arch.to_dict(), "costs": figures.__dict__})
        else:
            from tinydeploy.display import arch_lines
            for line in arch_lines(arch, figures.__dict__):
                print(line)
        return EXIT_OK

    def progress(kind, info):
        if not (args.json or args.quiet):
            from tinydeploy.display import search_trial_line
            line = search_trial_line(kind, info)
            if line:
                print(line, file=sys.stderr)

    summary = api.search(args.data, args.out, args.board, _targets(args), trials=args.trials, timeout=args.timeout,
                         storage=args.storage, study=args.study, join=args.join, budget=args.budget,
                         image_size=args.image_size, seed=args.seed, boards_dir=_boards_dir(args), progress=progress,
                         force=args.force, optuna_log=args.debug, front_end=args.front_end)
    if args.json:
        _emit_json(args, summary)
    else:
        from tinydeploy.display import search_lines
        for line in search_lines(summary, args.out):
            print(line)
    if not summary.get("best"):
        raise TargetMissed("no searched architecture meets every budget yet")
    return EXIT_OK


def _bench_options(args) -> dict:
    def progress(done, total):
        if not args.json and (done == total or done % 10 == 0):
            print(f"validated {done}/{total} samples on the device", file=sys.stderr)
    return {"baud": args.baud, "runs": args.runs, "warmup": args.warmup, "validate": args.validate, "data": args.data,
            "expect_model": args.expect_model, "timeout": args.timeout, "image_size": args.image_size,
            "seed": args.seed, "profile": args.profile, "force": args.force, "progress": progress,
            "power_monitor": args.power_monitor, "power_voltage": args.power_voltage}


def _farm(args):
    """The farm of --farm FILE or of several --port (the API loads and checks it), or None for
    one board (bench's own layout)."""
    if args.farm and args.port:
        raise BadInput("give --farm or --port, not both")
    if args.farm:
        return args.farm
    return list(args.port) if args.port and len(args.port) > 1 else None


def _show_farm(args, rows, title: str, saved: str = "results.json") -> int:
    from tinydeploy.device.farm import summary
    data = summary(rows)
    if args.json:
        _emit_json(args, data)
    else:
        from tinydeploy.display import farm_tables
        for table in farm_tables(data, title):
            _console().print(table)
        print(f"results: {args.out}/NAME/{saved} for each board, {args.out}/farm.json")
    if not data["ok"]:
        raise StepFailed(f"{len(data['failed'])} of {len(rows)} boards failed: {', '.join(data['failed'])} (the "
                         "other boards' results are kept)")
    return EXIT_OK


def cmd_bench(args) -> int:
    boards = _farm(args)
    if boards is not None:
        options = {k: v for k, v in _bench_options(args).items() if k != "progress"}  # lines would interleave
        return _show_farm(args, api.bench_farm(boards, args.out, min_agreement=args.min_agreement,
                                               boards_dir=_boards_dir(args), **options), "Farm bench")
    if not args.port:
        raise BadInput("give the board's --port (or --farm FILE, or several --port)")
    data = api.bench(args.port[0], args.out, min_agreement=args.min_agreement, boards_dir=_boards_dir(args),
                     **_bench_options(args)).to_dict()
    if args.json:
        _emit_json(args, data)
    else:
        from tinydeploy.display import bench_table, layers_table
        _console().print(bench_table(data))
        if data.get("profile"):
            _console().print(layers_table(data["profile"]))
        print(f"results: {args.out}/results.json, serial log: {args.out}/serial.log"
              + (f", per-layer chart: {args.out}/bench.html" if data.get("profile") else ""))
    return EXIT_OK


def cmd_calibrate(args) -> int:
    calibration = api.calibrate(args.results, args.board, args.out, _boards_dir(args), force=args.force)
    if args.json:
        _emit_json(args, calibration.to_dict())
        return EXIT_OK
    from tinydeploy.display import calibration_lines
    for line in calibration_lines(calibration.to_dict()):
        print(line)
    return EXIT_OK


def _show_verdicts(args, verdicts, payload: dict) -> None:
    if args.json:
        _emit_json(args, {**payload, "verdicts": [v.to_dict() for v in verdicts],
                          "met": all(v.met for v in verdicts)})
    else:
        from tinydeploy.display import targets_table
        _console().print(targets_table(verdicts, title="Verification"))


def cmd_verify(args) -> int:
    try:
        boards = _farm(args)
        if boards is not None and args.results:
            raise BadInput("give a results file or boards to bench (--farm, --port), not both")
    except BadInput as exc:  # a usage conflict: CI still finds the --junit file it asked for
        api.junit_refusal(args.junit, "usage", exc)
        raise
    if boards is not None:
        options = {k: v for k, v in _bench_options(args).items() if k != "progress"}  # lines would interleave
        return _show_farm(args, api.verify_farm(boards, _targets(args), args.min_agreement, args.out, args.junit,
                                                **options), "Farm verify")
    port = args.port[0] if args.port else None
    bench_options = _bench_options(args) if port else {"force": args.force}
    verdicts, results = api.verify(args.results, port, _targets(args), args.min_agreement, args.out, args.junit,
                                   board=args.board, boards_dir=_boards_dir(args),
                                   expect_version=args.expect_version, **bench_options)
    _show_verdicts(args, verdicts, {"results": results})
    require_met(verdicts)
    return EXIT_OK


def cmd_virtual_device(args) -> int:
    import signal
    import threading
    device = api.virtual_device(args.model, baud=args.baud, slots=args.slots, version=args.model_version)
    address = device.open_tcp(args.tcp) if args.tcp is not None else device.open_pty()
    if args.port_file:
        _write_option_file(args.port_file, address + "\n", "--port-file")
    if args.json:
        _emit_json(args, {"port": address, "model_sha256": device.model.sha256, "virtual": True})
    else:
        print(f"virtual device for {args.model} on {address}")
        print("latency it reports is host time (labelled virtual), not board time; Ctrl-C stops it")
    sys.stdout.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        device.close()
    return EXIT_OK


def cmd_deploy(args) -> int:
    boards = _farm(args)  # --farm, or several --port: a farm; one --port (or none): one board
    port = args.port[0] if args.port and boards is None else None
    with _progress(args) as progress:
        report = api.deploy(args.data, args.board, args.out, port, _targets(args), budget=args.budget,
                            min_agreement=args.min_agreement, image_size=args.image_size, seed=args.seed,
                            boards_dir=_boards_dir(args), progress=progress, stages=tuple(args.stages.split(",")),
                            farm=boards, force=args.force, front_end=args.front_end,
                            min_accuracy=args.min_accuracy)
    payload = report.to_dict()
    if args.json:
        _emit_json(args, payload)
    else:
        from tinydeploy.display import bench_table, farm_tables, optimize_table, targets_table
        console = _console()
        console.print(optimize_table(report.optimize))
        for table in farm_tables(report.farm, "Farm") if report.farm is not None else [bench_table(report.bench)]:
            console.print(table)
        title = "Verification" + (" — VIRTUAL device: no board attached" if report.virtual else "")
        console.print(targets_table(report.verdicts, title=title))
    if not report.met:
        raise TargetMissed(report.explanation())
    return EXIT_OK


def _add_bench_options(parser, required_port: bool, farm: bool = False) -> None:
    if farm:  # several boards at once: --port repeated, or a farm file
        parser.add_argument("--port", action="append", default=None,
                            help="device path or URL (socket://HOST:PORT, rfc2217://HOST:PORT, hwgrep://PATTERN); "
                                 "repeat it to bench several boards in parallel")
        parser.add_argument("--farm", type=FILE, default=None, metavar="FILE",
                            help="a farm file (TOML [[board]] tables: name, port, profile, reset): every board in "
                                 "parallel, results in OUT/NAME/ and OUT/farm.json")
    else:
        parser.add_argument("--port", required=required_port,
                            help="device path or URL (socket://HOST:PORT, rfc2217://HOST:PORT, hwgrep://PATTERN)")
    parser.add_argument("--baud", type=_bounded("--baud"), default=115200, help="line rate (default %(default)s)")
    parser.add_argument("--runs", type=_bounded("--runs"), default=20,
                        help="timed single inferences (default %(default)s)")
    parser.add_argument("--warmup", type=_bounded("--warmup"), default=2,
                        help="warm-up inferences first (default %(default)s)")
    parser.add_argument("--validate", type=_bounded("--validate"), default=0, metavar="N",
                        help="run N labelled samples on the device and compare with the host TFLM interpreter")
    parser.add_argument("--expect-model", default=None, metavar="MODEL.tflite",
                        help="the model the board must be running (SHA-256 checked); the host reference")
    parser.add_argument("--timeout", type=_bounded("--timeout"), default=10.0,
                        help="seconds to wait for a reply (default %(default)g)")
    parser.add_argument("--out", type=FOLDER, default="bench-results", help="folder for results.json and serial.log")
    parser.add_argument("--profile", action="store_true",
                        help="also time each layer on the device, beside the board profile's estimate")
    from tinydeploy.device.power import MONITORS
    parser.add_argument("--power-monitor", default=None, metavar="KIND[:PORT]",
                        help=f"record the board's current during the timed runs with a power monitor "
                             f"({', '.join(MONITORS)}; the firmware marks each inference on its marker input) and "
                             "store the measured energy per inference")
    parser.add_argument("--power-voltage", type=_bounded("--power-voltage"), default=3.3, metavar="V",
                        help="the supply voltage the power monitor gives the board (default %(default)g)")
    _add_force(parser)


def _add_force(parser, what: str = "write over files in --out that tinydeploy did not write") -> None:
    parser.add_argument("--force", action="store_true", help=what)


def _add_data(parser, required: bool = True) -> None:
    parser.add_argument("--data", required=required,
                        help="'digits' (built-in demo) or a .npz / .csv file of raw labelled samples")
    parser.add_argument("--image-size", type=_bounded("--image-size"), default=32, metavar="N",
                        help="side of the built-in digits images (default %(default)s)")
    parser.add_argument("--seed", type=_bounded("--seed"), default=0,
                        help="seed of every random choice (default %(default)s)")


def _add_targets(parser) -> None:
    from tinydeploy.core.targets import DEFAULT_MAX_ARENA_KB, DEFAULT_MAX_LATENCY_MS, DEFAULT_MAX_MODEL_KB
    parser.add_argument("--max-arena-kb", type=_bounded("--max-arena-kb"), default=DEFAULT_MAX_ARENA_KB,
                        metavar="KB",
                        help="tensor arena budget (default %(default)g)")
    parser.add_argument("--max-model-kb", type=_bounded("--max-model-kb"), default=DEFAULT_MAX_MODEL_KB,
                        metavar="KB",
                        help="model flash budget (default %(default)g)")
    parser.add_argument("--max-latency-ms", type=_bounded("--max-latency-ms"), default=DEFAULT_MAX_LATENCY_MS,
                        metavar="MS",
                        help="inference latency budget (default %(default)g)")


def _add_energy_targets(parser) -> None:
    from tinydeploy.core.targets import DEFAULT_RATE_HZ, TUTORIAL_MAX_POWER_MW
    parser.add_argument("--max-energy-uj", type=_bounded("--max-energy-uj"), default=None, metavar="UJ",
                        help="energy per inference budget (default: not judged)")
    parser.add_argument("--max-power-mw", type=_bounded("--max-power-mw"), default=None, metavar="MW",
                        help="average power budget at --rate-hz, with the sleep mode that minimises it (default: "
                             f"not judged; the highest rate within {TUTORIAL_MAX_POWER_MW:g} mW is shown)")
    parser.add_argument("--rate-hz", type=_bounded("--rate-hz"), default=DEFAULT_RATE_HZ, metavar="HZ",
                        help="inferences per second the average power is stated at (default %(default)g)")


def _options_boards(p) -> None:
    pass


def _options_inspect(p) -> None:
    from tinydeploy.codegen.frameworks import FRAMEWORKS
    p.add_argument("model", help="the .tflite file")
    p.add_argument("--board", default=DEFAULT_BOARD, help="board profile (default %(default)s)")
    p.add_argument("--framework", choices=[name for name, f in FRAMEWORKS.items() if TFLM in f.engines],
                   default=None, help="the TFLM firmware's framework, which picks the board's TFLM kernel library "
                                      "for the arena (default: the board profile's)")
    _add_targets(p)
    _add_energy_targets(p)


def _options_optimize(p) -> None:
    from tinydeploy.optimize import BUDGETS
    _add_data(p)
    p.add_argument("--out", type=FOLDER, required=True, help="folder for every stage's model and the report")
    p.add_argument("--test", default=None, metavar="DATA",
                   help="held-out test samples (.npz with x_test/y_test or x_train/y_train, or .csv), evaluated "
                        "once on TFLM for the chosen model; a .npz --data may carry x_test/y_test itself")
    p.add_argument("--board", default=DEFAULT_BOARD, help="board profile (default %(default)s)")
    from tinydeploy.codegen.frameworks import FRAMEWORKS
    p.add_argument("--framework", choices=list(FRAMEWORKS), default=None,
                   help="the firmware's framework, if not the board's: arduino's FULLY_CONNECTED takes dense "
                        "layers quantized per tensor, so the model is converted that way")
    _add_targets(p)
    _add_energy_targets(p)
    p.add_argument("--min-accuracy", type=_bounded("--min-accuracy"), default=None, metavar="A",
                   help="smallest acceptable int8 validation accuracy, as a fraction")
    p.add_argument("--budget", choices=list(BUDGETS), default="default", help="training effort (default %(default)s)")
    _add_stages(p)
    p.add_argument("--arch", default=None, metavar="FILE.json", help="start from this architecture spec")
    p.add_argument("--search", default=None, metavar="DIR", help="start from a search's best_arch.json")
    _add_front_end(p)
    _add_force(p, "start over: redo finished stages instead of resuming, and write over files in --out that "
                  "tinydeploy did not write")
    p.add_argument("--quiet", action="store_true", help="no progress display or table")


def _options_render(p) -> None:
    from tinydeploy.codegen.frameworks import FRAMEWORKS
    p.add_argument("model", help="the int8 .tflite file")
    p.add_argument("--board", required=True, help="board profile (see `tinydeploy boards`)")
    p.add_argument("--out", type=FOLDER, required=True, help="project folder to write")
    p.add_argument("--framework", choices=list(FRAMEWORKS), default=None,
                   help="espidf (esp-tflite-micro with ESP-NN), arduino (no ESP-NN, slower) or make (a board's own "
                        "cross compiler); default: the board profile's")
    p.add_argument("--arena-margin", type=_bounded("--arena-margin"), default=10.0, metavar="PCT",
                   help="arena margin over the measured TFLM arena, percent (default %(default)g)")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="class labels: a text file, one per line, or optimize's report.json")
    p.add_argument("--engine", choices=BOUNDS["--engine"].choices, default=None,
                   help="tflm (the TFLite Micro interpreter; the default where the board has it) or c "
                        "(the model as plain C, statically planned, no interpreter)")
    p.add_argument("--model-partition", action="store_true",
                   help="keep the model in two flash slots (A/B, partitions.csv) so that `flash --model` updates "
                        "it without reflashing the application (ESP-IDF)")
    p.add_argument("--duty-cycle-hz", type=_bounded("--duty-cycle-hz"), default=None, metavar="HZ",
                   help="render the duty-cycled firmware instead of the benchmark one: classify HZ times a second, "
                        "sleeping in between, raising the board's [power] marker_gpio during each inference "
                        "(docs/energy.md)")
    p.add_argument("--sleep", choices=BOUNDS["--sleep"].choices, default=None,
                   help="with --duty-cycle-hz: how the board rests between inferences (default: the mode of least "
                        "average power at that rate, estimated from the board's [power] figures)")
    _add_force(p, "write over files in --out that tinydeploy did not generate")


def _options_export(p) -> None:
    from tinydeploy.codegen.library import KINDS
    p.add_argument("model", help="the int8 .tflite file")
    p.add_argument("--kind", choices=list(KINDS), required=True,
                   help="idf-component (ESP-IDF), arduino-library (Arduino and PlatformIO) or c-library "
                        "(plain C99 with CMake, C engine)")
    p.add_argument("--out", type=FOLDER, required=True, help="folder to write the library into")
    p.add_argument("--engine", choices=BOUNDS["--engine"].choices, default=None,
                   help="tflm or c (default: the kind's first: tflm, or c for c-library)")
    p.add_argument("--name", default=None, metavar="NAME",
                   help="the library's name and the prefix of every symbol, escaped to a C identifier "
                        "(default: the model file's name)")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="class labels: a text file, one per line, or optimize's report.json (default: the "
                        "model's own, else class numbers)")
    p.add_argument("--data", default=None,
                   help="windows for the example app: 'digits' or a .npz / .csv file (default: the digits for "
                        "a digits-shaped model)")
    p.add_argument("--window", type=_bounded("--window"), default=None, metavar="N",
                   help="steps in one window, for a model whose flat input the metadata doesn't split "
                        "(default: the model's first input axis)")
    p.add_argument("--hop", type=_bounded("--hop"), default=None, metavar="H",
                   help="samples between classified windows in streaming (default: the window: no overlap)")
    p.add_argument("--smoothing", type=_bounded("--smoothing"), default=1, metavar="N",
                   help="streaming averages the last N results (default %(default)s: none)")
    p.add_argument("--board", default=DEFAULT_BOARD, help="board a TFLM arena is sized for (default %(default)s)")
    p.add_argument("--arena-margin", type=_bounded("--arena-margin"), default=10.0, metavar="PCT",
                   help="TFLM arena margin over the measured arena, percent (default %(default)g)")
    p.add_argument("--model-partition", action="store_true",
                   help="keep the model in two flash slots (A/B, partitions.csv): your application updates it "
                        "through the header's NAME_update_* functions (an idf-component)")
    _add_force(p, "write over files in --out that tinydeploy did not generate")


def _options_build(p) -> None:
    p.add_argument("dir", help="the project folder")
    p.add_argument("--env", default=None, help="PlatformIO environment (default: all)")
    p.add_argument("--quiet", action="store_true", help="don't stream the build's output")


def _options_emulate(p) -> None:
    p.add_argument("dir", help="the built project folder")
    p.add_argument("--tcp", type=_bounded("--tcp"), default=0, metavar="PORT",
                   help="loopback TCP port for the UART (default: any free port)")
    p.add_argument("--port-file", default=None, metavar="F", help="also write the serial port URL to this file")
    p.add_argument("--model", type=FILE, default=None, metavar="IMAGE",
                   help="a firmware rendered with --model-partition: boot with this model image (`package`) in "
                        "slot A of a freshly erased flash (default: the flash DIR/flash.bin as the last run left it)")


def _options_flash(p) -> None:
    p.add_argument("dir", nargs="?", help="the project folder")
    p.add_argument("--port", default=None, help="serial port or pyserial URL; detected by USB IDs when omitted")
    p.add_argument("--env", default=None, help="PlatformIO environment")
    p.add_argument("--firmware", default=None, metavar="BIN", help="write this prebuilt image with esptool")
    p.add_argument("--chip", default=None, help="esptool chip name for --firmware (esp32, esp32s3, esp32c3, ...)")
    p.add_argument("--board", default=None, help="for --firmware: the board profile whose chip to flash")
    p.add_argument("--offset", type=_bounded("--offset"), default=0x10000,
                   help="flash address for --firmware (default 0x10000)")
    p.add_argument("--farm", type=FILE, default=None, metavar="FILE",
                   help="write --firmware to every board of a farm file in parallel (logs in OUT/NAME/flash.log)")
    p.add_argument("--model", type=FILE, default=None, metavar="IMAGE",
                   help="write a model image (tinydeploy package) to the inactive model slot of DIR's firmware "
                        "(rendered with --model-partition) and mark it to try")
    p.add_argument("--serial", action="store_true",
                   help="with --model: upload through the application's serial protocol on --port instead of esptool")
    p.add_argument("--dry-run", action="store_true",
                   help="with --model: only check that the image fits DIR's firmware, and say where it would go")
    p.add_argument("--out", type=FOLDER, default="flash-results", help="with --farm: folder for the logs and farm.json")
    _add_force(p)
    p.add_argument("--quiet", action="store_true", help="don't stream the tool's output")


def _options_bench(p) -> None:
    _add_bench_options(p, required_port=False, farm=True)
    _add_data(p, required=False)
    p.add_argument("--min-agreement", type=_bounded("--min-agreement"), default=1.0,
                   help="with --validate, the smallest top-1 agreement with the host reference that passes; below "
                        "it bench exits 1 (default %(default)g: the device agrees on every sample)")


def _options_calibrate(p) -> None:
    p.add_argument("results", nargs="+", help="results.json files (or their folders) of `bench --profile` runs")
    p.add_argument("--board", required=True, help="the board the runs were measured on")
    p.add_argument("--out", type=FOLDER, default="calibrated-boards",
                   help="folder for the calibrated profile BOARD.toml (default %(default)s)")
    _add_force(p, "write over an OUT/BOARD.toml that tinydeploy did not write (a hand-written profile)")


def _options_verify(p) -> None:
    p.add_argument("results", nargs="?", help="results.json (or its folder) from tinydeploy bench")
    _add_bench_options(p, required_port=False, farm=True)
    _add_data(p, required=False)
    _add_targets(p)
    _add_energy_targets(p)
    p.add_argument("--board", default=None,
                   help="the board profile whose [power] figures estimate energy where the results hold no power "
                        "measurement (default: the board the results name)")
    p.add_argument("--min-agreement", type=_bounded("--min-agreement"), default=1.0,
                   help="smallest top-1 agreement with the host reference when validated (default %(default)g: the "
                        "device agrees on every sample)")
    p.add_argument("--junit", type=FILE, default=None, metavar="FILE",
                   help="also write the verdicts as JUnit XML (always, when asked: a run that fails is a failing case)")
    p.add_argument("--expect-version", default=None, metavar="X.Y.Z",
                   help="fail unless the device reported this model version (a firmware with model slots)")


def _options_virtual_device(p) -> None:
    p.add_argument("model", help="the int8 .tflite file it runs")
    p.add_argument("--port-file", default=None, metavar="F", help="also write the port to this file")
    p.add_argument("--tcp", type=_bounded("--tcp"), default=None, metavar="PORT",
                   help="serve socket://127.0.0.1:PORT instead of a pty (0 picks a free port)")
    p.add_argument("--baud", type=_bounded("--baud"), default=None,
                   help="pace the link to this line rate, as a UART would")
    p.add_argument("--slots", type=FOLDER, default=None, metavar="DIR",
                   help="act as a firmware rendered with --model-partition, with DIR as its flash: the model runs "
                        "from slot A or B, and `flash --model IMAGE --serial` uploads another")
    p.add_argument("--model-version", default=None, metavar="X.Y.Z",
                   help="with --slots, the version of MODEL in a new flash (default: the model's own, else 0.1.0)")


def _add_stages(p) -> None:
    from tinydeploy.optimize import STAGES
    p.add_argument("--stages", default=",".join(STAGES),
                   help=f"comma-separated optimize stages to run, in order (default {','.join(STAGES)})")


def _add_front_end(p) -> None:
    p.add_argument("--front-end", default="auto", metavar="auto|none|SPEC",
                   help="the signal front end before the network: auto (compared per dataset, default), none, or "
                        "a SPEC that pins one, e.g. 'decimate:4,normalize:log' or "
                        "'normalize,spectrum:frame=256,hop=128,bands=20' (blocks normalize, decimate, spectrum, "
                        "stats; docs/frontend.md), or a JSON file of its blocks")


def _options_deploy(p) -> None:
    from tinydeploy.optimize import BUDGETS
    _add_data(p)
    p.add_argument("--board", default=DEFAULT_BOARD, help="board profile (default %(default)s)")
    p.add_argument("--port", action="append", default=None,
                   help="the board's port (detected; the virtual device when none); repeat it for several boards")
    p.add_argument("--farm", type=FILE, default=None, metavar="FILE",
                   help="flash, bench and verify every board of a farm file in parallel instead of one board")
    p.add_argument("--out", type=FOLDER, default="build/deploy", help="output folder (default %(default)s)")
    p.add_argument("--budget", choices=list(BUDGETS), default="default", help="optimize's training effort")
    _add_stages(p)
    p.add_argument("--min-agreement", type=_bounded("--min-agreement"), default=1.0,
                   help="on-device validation agreement target (default %(default)g: every sample agrees)")
    p.add_argument("--min-accuracy", type=_bounded("--min-accuracy"), default=None, metavar="A",
                   help="smallest acceptable int8 validation accuracy, as a fraction (default: the model must "
                        "clear chance and not lie clearly below the 1-NN yardstick)")
    _add_front_end(p)
    _add_force(p, "start over: redo optimize's stages, and write over files in --out that tinydeploy did not write")
    _add_targets(p)
    _add_energy_targets(p)


def _options_search(p) -> None:
    from tinydeploy.optimize.search import SEARCH_EPOCHS
    _add_data(p, required=False)
    p.set_defaults(data="digits")
    p.add_argument("--out", type=FOLDER, default="build/search", help="folder for the study, best_arch.json and search.html")
    p.add_argument("--board", default=DEFAULT_BOARD, help="board profile (default %(default)s)")
    p.add_argument("--trials", type=_bounded("--trials"), default=None, help="trials to run (this worker)")
    p.add_argument("--timeout", type=_bounded("--timeout"), default=None, help="seconds to search (this worker)")
    p.add_argument("--storage", default=None, help="RDB URL (default sqlite in --out); postgresql://... for workers")
    p.add_argument("--study", default="tinydeploy", help="study name (default %(default)s)")
    p.add_argument("--join", action="store_true", help="add a worker to an existing study")
    p.add_argument("--budget", choices=list(SEARCH_EPOCHS), default="fast", help="training per trial")
    p.add_argument("--show", default=None, metavar="FILE.json", help="print an architecture's layers and costs")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    _add_force(p)
    _add_targets(p)
    _add_front_end(p)


def _options_package(p) -> None:
    p.add_argument("model", help="the int8 .tflite file")
    p.add_argument("--version", required=True, metavar="X.Y.Z",
                   help="the model's semantic version, which the device reports in info%%")
    p.add_argument("--out", type=FILE, required=True, metavar="IMAGE", help="the model image to write (model.bin)")
    _add_force(p, "write over an --out file that tinydeploy did not write")


def _options_evaluate(p) -> None:
    p.add_argument("model", help="the .tflite file")
    _add_data(p)


COMMANDS = [  # name, summary, options, handler
    ("boards", "list the board profiles and their budgets",
     _options_boards, cmd_boards),
    ("inspect", "what a .tflite model costs on a board: ops, MACs, measured TFLM arena, latency",
     _options_inspect, cmd_inspect),
    ("optimize", "train and optimize a model until its int8 form fits the board",
     _options_optimize, cmd_optimize),
    ("render", "write a firmware project for an int8 model",
     _options_render, cmd_render),
    ("export", "write the model as a library for your own app (ESP-IDF component, Arduino library, C library)",
     _options_export, cmd_export),
    ("build", "compile a rendered project (PlatformIO, or the board's cross compiler)",
     _options_build, cmd_build),
    ("emulate", "boot a built project for an emulated board; prints the serial port for bench",
     _options_emulate, cmd_emulate),
    ("flash", "upload a project (PlatformIO) or a prebuilt image (esptool) to a board",
     _options_flash, cmd_flash),
    ("package", "pack a model into a versioned model image for a firmware's flash slot",
     _options_package, cmd_package),
    ("bench", "measure latency and RAM on a board over serial",
     _options_bench, cmd_bench),
    ("calibrate", "fit a board's per-operator costs on profiled bench runs; writes a board profile",
     _options_calibrate, cmd_calibrate),
    ("verify", "judge bench results against the targets (exit 1 when one is missed)",
     _options_verify, cmd_verify),
    ("virtual-device", "a stand-in board on a pty or TCP port: real TFLM, virtual (host) latency",
     _options_virtual_device, cmd_virtual_device),
    ("deploy", "optimize, render, build, flash, bench and verify in one command",
     _options_deploy, cmd_deploy),
    ("search", "hardware-aware architecture search (Optuna NSGA-II) within the budgets",
     _options_search, cmd_search),
    ("evaluate", "int8 accuracy of a .tflite model on raw labelled data, on the TFLM interpreter",
     _options_evaluate, cmd_evaluate),
]


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    common.add_argument("--boards-dir", type=FOLDER, action="append", default=[], metavar="DIR",
                        help="a folder of your own board profiles (*.toml), besides $TINYDEPLOY_BOARDS; repeatable")
    parser = _Parser(
        prog="tinydeploy", parents=[common],
        description="From data to a verified TinyML firmware for ESP32 boards.")
    parser.add_argument("--version", action="version", version=f"tinydeploy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary, options, handler in COMMANDS:
        command = sub.add_parser(name, parents=[common], help=summary)
        options(command)
        command.set_defaults(func=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except BadInput as exc:  # usage: an unknown option, a value out of range
        api.junit_refusal(_junit_asked(argv), "usage", exc)
        if "--json" in argv:
            print(json.dumps({"error": str(exc), "exit_code": exc.exit_code}, indent=2))
        print(f"tinydeploy: error: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        try:
            return args.func(args)
        except ModuleNotFoundError as exc:  # a module of an extra that is not installed: say which
            raise extra_missing(exc) from exc
    except TinyDeployError as exc:
        return _failed(args, str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return _failed(args, "interrupted", EXIT_FAILED, prefix="tinydeploy: ")
    except Exception as exc:  # a bug: one line, the traceback with --debug
        return _failed(args, f"internal error: {type(exc).__name__}: {exc}", EXIT_FAILED, prefix="tinydeploy: ",
                       hint="" if args.debug else " (run with --debug for the traceback)")


def _junit_asked(argv: list[str]) -> str | None:
    """The --junit FILE of a verify command line that could not be parsed (the last one given), if any."""
    if "verify" not in argv:  # the one command with --junit
        return None
    found = None
    for i, arg in enumerate(argv):
        if arg == "--junit" and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith("--junit="):
            found = arg.split("=", 1)[1]
    return found or None


def _failed(args, message: str, code: int, prefix: str = "tinydeploy: error: ", hint: str = "") -> int:
    """The one way a command ends on an error: the traceback with --debug (which changes nothing
    else), one JSON document under --json (unless the command printed its own), one line on
    stderr; returns the exit code."""
    if args.debug:
        import traceback
        traceback.print_exc()
    if args.json and not getattr(args, "json_emitted", False):
        _emit_json(args, {"error": message, "exit_code": code})
    print(f"{prefix}{message}{hint}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
