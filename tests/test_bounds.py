"""Bounds on user input are one table (tinydeploy/core/bounds.py): the CLI's parser and every
library function that takes the input refuse exactly what the table refuses, at both ends of
every bound, so the CLI and the library cannot disagree again (the CLI once took --image-size
4..512 while the library refused all but 8..128)."""

import math

import numpy as np
import pytest

from tinydeploy import api
from tinydeploy.cli import FILE, FOLDER, build_parser
from tinydeploy.core.bounds import BOUNDS, check, problem
from tinydeploy.core.errors import BadInput

pytestmark = pytest.mark.unit

CLI_BOUNDS = {option: bound for option, bound in BOUNDS.items() if option.startswith("--")}
# Options whose choices a registry above core defines (see tinydeploy/core/bounds.py).
REGISTRY_CHOICES = {"--framework", "--budget", "--kind"}  # --kind: tinydeploy.codegen.library.KINDS


def _step(bound, value, direction: int):
    """The next value of the bound's kind from value, up (1) or down (-1)."""
    return value + direction if bound.kind is int else math.nextafter(value, direction * math.inf)


def edges(bound) -> list[tuple[object, bool]]:
    """Values at, just inside and just outside each end of a bound, each with whether the
    bound's ends say it is accepted (worked out here from low, high and low_open, not by the
    bound's own check)."""
    if bound.choices:
        return [(name, True) for name in bound.choices] + [(bound.choices[0] + "x", False), ("", False)]
    cases = []
    if bound.low is not None:
        cases += [(bound.low, not bound.low_open), (_step(bound, bound.low, -1), False),
                  (_step(bound, bound.low, 1), True)]
    if bound.high is not None:
        cases += [(bound.high, True), (_step(bound, bound.high, 1), False), (_step(bound, bound.high, -1), True)]
    else:
        cases.append((bound.kind(10**6), True))
    return cases


def _text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _commands() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def _bounded_actions():
    """(command, its parser, the action, its bound) for every option that reads a bound."""
    for name, command in _commands().items():
        for action in command._actions:
            bound = getattr(action.type, "bound", None)
            option = next((o for o in action.option_strings if o in BOUNDS), None)
            if bound is not None or option is not None:
                yield name, command, action, bound or BOUNDS[option]


def _required(command) -> list[str]:
    """The least a command's parser needs besides the option under test."""
    argv = []
    for action in command._actions:
        if action.required:  # a set of names (--kind) takes its first
            argv += [*action.option_strings[:1], action.choices[0] if action.choices else "x"]
    return argv


def test_every_option_with_a_number_or_a_choice_reads_its_own_bound():
    used = set()
    for name, command, action, bound in _bounded_actions():
        assert bound.option in action.option_strings, (name, action.option_strings, bound.option)
        if bound.choices:
            assert action.type is None and tuple(action.choices) == bound.choices, (name, bound.option)
        else:
            assert action.type.bound is bound and action.choices is None, (name, bound.option)
        used.add(bound.option)
    assert used == set(CLI_BOUNDS)  # no bound is left unused, nor written for an option that is gone
    for name, command in _commands().items():  # and no option checks a number or a set by itself
        for action in command._actions:
            if action.type is not None:
                assert hasattr(action.type, "bound") or action.type in (FOLDER, FILE), (name, action.option_strings)
            if action.choices is not None and not hasattr(action.type, "bound"):
                assert set(action.option_strings) & (set(CLI_BOUNDS) | REGISTRY_CHOICES), (name, action.option_strings)


def test_the_parser_refuses_exactly_what_the_table_refuses():
    parser = build_parser()
    checked = 0
    for name, command, action, bound in _bounded_actions():
        cases = edges(bound)
        if bound.any_base:
            cases += [(hex(bound.high), True), (hex(bound.high + 1), False), ("zzz", False)]
        for value, accepted in cases:
            text = _text(value)
            argv = [name, *_required(command), f"{bound.option}={text}"]
            try:
                parsed = parser.parse_args(argv)
            except BadInput as exc:
                assert not accepted, f"{argv}: {exc}"
                assert bound.option in str(exc) and text in str(exc), str(exc)
            else:
                assert accepted, f"{argv} was accepted"
                assert getattr(parsed, action.dest) == (int(text, 0) if bound.any_base else value)
            checked += 1
    assert checked > 150


def test_a_message_names_the_option_the_value_and_what_is_accepted():
    assert problem("--image-size", 200) == "--image-size is an image side in pixels, 4..128, got 200"
    assert problem("--max-arena-kb", 0) == "--max-arena-kb is a positive number of KB, got 0"
    assert problem("--min-accuracy", 1.5) == "--min-accuracy is a fraction in (0, 1], got 1.5"
    assert problem("--engine", "tvm") == "--engine is one of tflm, c, got 'tvm'"
    assert problem("--offset", 1 << 32) == "--offset is a flash address, 0x0..0xffffffff, got 4294967296"
    assert problem("--runs", 1) is None and check("--runs", 1) == 1
    for option, odd in (("--runs", True), ("--runs", 2.0), ("--timeout", math.nan), ("--timeout", math.inf),
                        ("--baud", "9600")):
        with pytest.raises(BadInput, match=f"^{option} is "):
            check(option, odd)
    assert check("--runs", np.int64(3)) == 3 and check("--timeout", np.float32(0.5)) == 0.5


class _Reached(Exception):
    """The library got past the bound, to a step the test stops it at."""


def _stop(*_args, **_kwargs):
    raise _Reached


@pytest.fixture
def library(monkeypatch, tmp_path):
    """For every bound, calls of each library function that takes the input, with the value;
    each stops at its first step past the checks."""
    from tinydeploy.codegen.library import ExportOptions, export
    from tinydeploy.codegen.render import RenderOptions, render
    from tinydeploy.core import data, outputs
    from tinydeploy.core.boards import get_board
    from tinydeploy.core.targets import Targets
    from tinydeploy.costs import figures
    from tinydeploy.device import bench, emulate
    from tinydeploy.device.virtual_device import VirtualDevice
    from tinydeploy.optimize import OptimizeConfig
    from tinydeploy.optimize import search as search_lib
    from tinydeploy.toolchain.flash import flash_firmware
    monkeypatch.setattr(outputs, "output_folder", _stop)  # bench's and search's first step past their checks
    monkeypatch.setattr(data, "digits", _stop)
    board = get_board("esp32dev")

    def searching(options):
        return lambda v: search_lib.search(search_lib.SearchConfig(None, tmp_path, board, **options(v)))

    def benching(option):
        return [lambda v: bench.bench("socket://127.0.0.1:1", tmp_path, **{option: v}),
                lambda v: api.bench_farm([], tmp_path, **{option: v})]

    missing = str(tmp_path / "missing")
    return {
        "--image-size": [lambda v: data.load("digits", image_size=v)],
        "--seed": [lambda v: data.load("digits", seed=v), lambda v: OptimizeConfig(None, tmp_path, board, seed=v),
                   searching(lambda v: {"seed": v})],
        "--baud": [lambda v: VirtualDevice(missing, baud=v), *benching("baud")],
        "--tcp": [lambda v: emulate.start(tmp_path, v)],
        "--runs": benching("runs"),
        "--warmup": benching("warmup"),
        "--validate": [lambda v: api.validation_samples(None, v)],
        "--timeout": [*benching("timeout"), searching(lambda v: {"trials": None, "timeout": v})],
        "--trials": [searching(lambda v: {"trials": v})],
        "--max-arena-kb": [lambda v: Targets(max_arena_kb=v)],
        "--max-model-kb": [lambda v: Targets(max_model_kb=v)],
        "--max-latency-ms": [lambda v: Targets(max_latency_ms=v)],
        "--max-energy-uj": [lambda v: Targets(max_energy_uj=v)],
        "--max-power-mw": [lambda v: Targets(max_power_mw=v), lambda v: figures.energy(board, 1.0, "", budget_mw=v)],
        "--rate-hz": [lambda v: Targets(rate_hz=v), lambda v: figures.energy(board, 1.0, "", rate_hz=v),
                      lambda v: figures.energy(get_board("qemu-riscv32"), 1.0, "", rate_hz=v)],
        "--power-voltage": benching("power_voltage"),
        "--min-accuracy": [lambda v: OptimizeConfig(None, tmp_path, board, min_accuracy=v)],
        "--min-agreement": [lambda v: api.verify(None, None, min_agreement=v),
                            lambda v: api.verify_farm([], min_agreement=v, out=tmp_path),
                            lambda v: api.deploy(missing + ".npz", min_agreement=v)],
        "--arena-margin": [lambda v: render(None, board, None, RenderOptions(arena_margin_percent=v)),
                           lambda v: export(None, board, ExportOptions("c-library", arena_margin_percent=v))],
        "--window": [lambda v: export(None, board, ExportOptions("c-library", window=v))],
        "--hop": [lambda v: export(None, board, ExportOptions("c-library", hop=v))],
        "--smoothing": [lambda v: export(None, board, ExportOptions("c-library", smoothing=v))],
        "--duty-cycle-hz": [lambda v: render(None, board, None, RenderOptions(duty_cycle_hz=v))],
        "--offset": [lambda v: flash_firmware(missing, "esp32", offset=v),
                     lambda v: api.flash_farm([], missing, "esp32", offset=v, out=tmp_path)],
    }


def _refused(call, value, option: str) -> bool:
    """Whether call(value) is refused by option's bound (any other outcome is past it)."""
    try:
        call(value)
    except BadInput as exc:
        return str(exc).startswith(f"{option} is ")
    except Exception:  # noqa: BLE001 - stopped, or failed later on the test's stand-in input: past the bound
        return False
    return False


def test_the_library_refuses_exactly_what_the_table_refuses(library):
    checked = 0
    for option, bound in CLI_BOUNDS.items():
        if bound.choices:
            continue  # the engine: its registry checks it (next test)
        assert library.get(option), f"no library function is tested for {option}"
        for call in library[option]:
            for value, accepted in edges(bound):
                assert _refused(call, value, option) == (not accepted), (option, value)
                checked += 1
    assert checked > 120


def test_the_engine_registry_takes_the_tables_engines():
    from tinydeploy.codegen.engines import ENGINES, engine_for
    from tinydeploy.core.boards import get_board
    assert tuple(ENGINES) == BOUNDS["--engine"].choices
    with pytest.raises(BadInput, match="unknown engine 'tvm'. Engines: tflm, c"):
        engine_for(get_board("esp32dev"), "tvm")


def test_the_search_budget_is_one_of_the_searchs_own(tmp_path):
    from tinydeploy.core.boards import get_board
    from tinydeploy.optimize.search import SEARCH_EPOCHS, SearchConfig, search
    search_options = next(c for n, c in _commands().items() if n == "search")
    budget = next(a for a in search_options._actions if a.dest == "budget")
    assert tuple(budget.choices) == tuple(SEARCH_EPOCHS)
    with pytest.raises(BadInput, match="unknown search budget 'thorough'. Budgets: fast, default"):
        search(SearchConfig(None, tmp_path, get_board("esp32dev"), budget="thorough"))


def test_sample_values_are_refused_beyond_their_bound():
    from tinydeploy.core.data import from_arrays
    high = BOUNDS["sample values"].high
    y = np.array([0, 1, 0, 1, 0, 1])
    for value, accepted in ((high, True), (-high, True), (math.nextafter(high, math.inf), False),
                            (-math.nextafter(high, math.inf), False)):
        x = np.zeros((6, 3, 1))
        x[0, 0, 0] = value
        if accepted:
            assert from_arrays(x, y, x, y, "edge").kind == "series"
        else:
            with pytest.raises(BadInput, match="values as large as"):
                from_arrays(x, y, x, y, "edge")


@pytest.mark.host
def test_the_digits_load_at_both_ends_of_the_image_size():
    """The ends of --image-size are sizes the library really makes (loading digits takes seconds)."""
    from tinydeploy.core import data
    bound = BOUNDS["--image-size"]
    for size in (bound.low, bound.high):
        assert data.load("digits", image_size=size).input_shape == (size, size, 1)
