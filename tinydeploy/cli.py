"""The `tinydeploy` command. Each subcommand parses its arguments, calls the
library function of the same name, and shows the result. Exit codes are
decided here and only here: 0 ok, 1 a target missed or a step failed, 2 bad
input or usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tinydeploy import __version__
from tinydeploy.errors import EXIT_FAILED, EXIT_OK, BadInput, TargetMissed, TinyDeployError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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


def cmd_boards(args) -> int:
    from tinydeploy.boards import load_boards
    boards = load_boards()
    if args.json:
        _emit_json(args, [b.to_dict() for b in boards.values()])
    else:
        from tinydeploy.display import boards_table
        _console().print(boards_table(boards))
    return EXIT_OK


def cmd_inspect(args) -> int:
    from tinydeploy.boards import get_board
    from tinydeploy.inspect import inspect
    from tinydeploy.targets import Targets
    targets = Targets(args.max_arena_kb, args.max_model_kb, args.max_latency_ms)
    report = inspect(args.model, get_board(args.board), targets)
    data = report.to_dict()
    if args.json:
        _emit_json(args, data)
    else:
        from tinydeploy.display import inspect_view
        _console().print(inspect_view(data))
    if report.problems:
        raise BadInput("; ".join(report.problems))
    if not report.targets_met:
        missed = ", ".join(f"{t.name} {t.measured:g} {t.unit} > {t.limit:g} {t.unit}"
                           for t in report.targets if not t.met)
        raise TargetMissed(f"targets missed: {missed}")
    return EXIT_OK


def _add_targets(parser) -> None:
    from tinydeploy.targets import DEFAULT_MAX_ARENA_KB, DEFAULT_MAX_LATENCY_MS, DEFAULT_MAX_MODEL_KB
    parser.add_argument("--max-arena-kb", type=float, default=DEFAULT_MAX_ARENA_KB, metavar="KB",
                        help="tensor arena budget (default %(default)g)")
    parser.add_argument("--max-model-kb", type=float, default=DEFAULT_MAX_MODEL_KB, metavar="KB",
                        help="model flash budget (default %(default)g)")
    parser.add_argument("--max-latency-ms", type=float, default=DEFAULT_MAX_LATENCY_MS, metavar="MS",
                        help="inference latency budget (default %(default)g)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    parser = argparse.ArgumentParser(
        prog="tinydeploy", parents=[common],
        description="From data to a verified TinyML firmware for ESP32 boards.")
    parser.add_argument("--version", action="version", version=f"tinydeploy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("boards", parents=[common], help="list the board profiles and their budgets")
    p.set_defaults(func=cmd_boards)

    p = sub.add_parser("inspect", parents=[common],
                       help="what a .tflite model costs on a board: ops, MACs, measured TFLM arena, latency")
    p.add_argument("model", help="the .tflite file")
    p.add_argument("--board", default="esp32-s3-devkitc-1", help="board profile (default %(default)s)")
    _add_targets(p)
    p.set_defaults(func=cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TinyDeployError as exc:
        if args.debug:
            raise
        if args.json and not getattr(args, "json_emitted", False):
            _emit_json(args, {"error": str(exc), "exit_code": exc.exit_code})
        print(f"tinydeploy: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tinydeploy: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # a bug: one line, the traceback with --debug
        if args.debug:
            raise
        print(f"tinydeploy: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
