"""`tinydeploy verify`: judge bench results against the targets, for people and for CI.

Exit code 0 when every target is met, 1 otherwise; ``junit_xml`` turns the
verdicts into JUnit XML so CI systems show each target as a test case.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from tinydeploy.core.boards import Board, get_board
from tinydeploy.core.errors import BadInput, TinyDeployError
from tinydeploy.core.names import TFLM
from tinydeploy.core.outputs import read_json
from tinydeploy.core.results_schema import validate
from tinydeploy.core.targets import TargetResult, Targets, check
from tinydeploy.costs import figures


def load_results(path: str | Path) -> dict:
    """A bench results file (or the results.json in a folder), checked against its schema
    (tinydeploy.core.results_schema) before anything is judged from it.

    Raises:
        BadInput: missing, not JSON, or not valid bench results (naming every bad field).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    return validate(read_json(p, "no such results file (tinydeploy bench --out DIR writes DIR/results.json)"), p)


def results_board(results: dict, boards_dir: tuple[str, ...] = ()) -> Board | None:
    """The profile of the board the results name (their device's info), or None where they name
    no known profile (the virtual device names none)."""
    name = (results.get("device") or {}).get("board")
    try:
        return get_board(name, boards_dir) if isinstance(name, str) else None
    except BadInput:
        return None


def energy_figures(results: dict, targets: Targets, board: Board | None, latency_ms: float | None,
                   latency_basis: str, host_time: bool = False) -> figures.Energy:
    """Energy per inference and average power at targets.rate_hz: from the power monitor's
    measurement where the results hold one (bench --power-monitor), else estimated from the
    latency judged and the board's [power] profile, each labelled with its basis. host_time:
    that latency is the virtual device's host time, which no estimate is made from."""
    power = results.get("power") or {}
    if power.get("energy_uj") is not None:
        return figures.measured_energy(board, power, targets.rate_hz, targets.power_budget_mw)
    if board is None:
        named = (results.get("device") or {}).get("board")
        which = f"name board {named!r}, which is no known board profile," if named else "name no board"
        return figures.Energy(str(named or "unknown board"), targets.rate_hz, targets.power_budget_mw,
                              reason=f"estimate unavailable: the results {which} and hold no power measurement "
                                     "(bench --power-monitor); give --board")
    if host_time:
        return figures.Energy(board.name, targets.rate_hz, targets.power_budget_mw,
                              reason="estimate unavailable: the virtual device's latency is host time, not the "
                                     f"board's, and the results hold no power measurement; inspect the model "
                                     f"with --board {board.name} for the estimate")
    return figures.energy(board, latency_ms, latency_basis, targets.rate_hz, targets.power_budget_mw)


def verify(results: dict, targets: Targets = Targets(), min_agreement: float = 1.0,
           latency_estimate_ms: float | None = None, board: Board | None = None,
           expect_version: str | None = None) -> list[TargetResult]:
    """The verdict on each target.

    Args:
        results: bench results (BenchResult.to_dict()).
        targets: arena, model, latency and (where set) energy budgets.
        min_agreement: smallest top-1 agreement with the host reference, when validated.
        latency_estimate_ms: for a virtual device, the board's estimated latency to judge instead
            of the host's timing (which says nothing about the board).
        board: the board profile whose [power] figures estimate energy where the results hold no
            power measurement (default: the profile the results' device names, if one is known).
        expect_version: the model version the device must have reported (a firmware with model
            slots reports the running slot's version in info%); a mismatch is a missed target.

    Returns:
        One TargetResult per target; a run that did not complete is a missed target too.
    """
    virtual = bool(results.get("virtual"))
    device = results.get("device") or {}
    if virtual:
        where = "virtual device (host TFLM)"
    elif device.get("timer") == "instructions":
        where = f"emulated board {device.get('board', '')} ({device.get('engine', TFLM)} engine's static plan)"
    else:
        where = "board"
    latency = results.get("latency_us") or {}
    if virtual and latency_estimate_ms is not None:
        latency_ms, latency_basis = latency_estimate_ms, "estimate for the board (no board attached)"
    elif latency:
        latency_ms, latency_basis = latency["median"] / 1000, f"median, {latency.get('basis', where)}"
    else:
        latency_ms, latency_basis = None, ""
    energy = None
    if targets.judges_energy:
        energy = energy_figures(results, targets, board or results_board(results), latency_ms, latency_basis,
                                host_time=virtual and latency_estimate_ms is None)
    arena, arena_basis = results.get("arena_used_bytes"), f"arena_used_bytes() on the {where}"
    front_ram = device.get("frontend_ram_bytes")
    if arena is not None and front_ram:  # the front end's RAM beside the model's arena, as info% states it
        arena, arena_basis = arena + front_ram, f"{arena_basis} + the front end's {front_ram:,} B (info%)"
    verdicts = check(targets, arena_bytes=arena, model_bytes=results.get("model_bytes"),
                     latency_ms=latency_ms, arena_basis=arena_basis,
                     latency_basis=latency_basis, energy=energy)
    expected, actual = results.get("expected_sha256"), results.get("model_sha256")
    if expected:
        same = expected == actual
        verdicts.insert(0, TargetResult("model hash", float(same), 1.0, "", "SHA-256 from info%", at_least=True,
                                        detail=(f"matches {expected}" if same
                                                else f"device runs {actual}, expected {expected}")))
    if expect_version:
        ran = results.get("model_version")
        verdicts.insert(0, TargetResult("model version", float(ran == expect_version), 1.0, "",
                                        "model_version from info% (the running slot's)", at_least=True,
                                        detail=(f"slot {results.get('model_slot')} runs {ran}" if ran == expect_version
                                                else f"device runs {ran or 'no versioned model'} in slot "
                                                     f"{results.get('model_slot') or '-'}, expected {expect_version}")))
    validation = results.get("validation")
    if validation:
        verdicts.append(TargetResult("agreement", validation["top1_agreement"], min_agreement, "",
                                     f"top-1 vs {validation.get('reference', 'host TFLM')} over "
                                     f"{validation['samples']} samples", at_least=True))
    if not results.get("complete"):
        verdicts.append(TargetResult("bench completed", 0.0, 1.0, "", "bench run", at_least=True,
                                     detail=_what_stopped(results)))
    return verdicts


def _what_stopped(results: dict) -> str:
    """A partial run in words: why it stopped, what it measured and what is missing."""
    why = results.get("error") or "no error was recorded (the bench process itself was stopped)"
    measured, missing = [], []
    if results.get("device"):
        measured.append("device info")
    else:
        missing.append("device info")
    # (results key, count field, what was measured, what a partial run lacks, what a missing part lacks)
    parts = (("latency_us", "runs", "timings", "the rest of the timings", "latency"),
             ("validation", "samples", "samples validated", "the rest of the validation", None))
    for key, count, measure, rest, absent in parts:
        figures = results.get(key) or {}
        if figures.get("partial"):
            measured.append(f"{figures[count]} of {figures.get(count + '_planned', '?')} {measure}")
            missing.append(rest)
        elif figures:
            measured.append(f"{figures.get(count)} {measure}")
        elif absent:
            missing.append(absent)
    return (f"the run stopped: {why}. Measured: {', '.join(measured) or 'nothing'}; "
            f"missing: {', '.join(missing) or 'validation, if it was asked for'}")


def failed_run(name: str, error: BaseException) -> TargetResult:
    """A missed verdict for a run that left nothing to judge (a port that did not answer,
    results that are not valid), naming why: JUnit always has a test case to fail."""
    why = str(error) if isinstance(error, TinyDeployError) else f"{type(error).__name__}: {error}"
    return TargetResult(name, 0.0, 1.0, "", why, at_least=True, detail=f"nothing to judge: {why}")


def junit_xml(verdicts: list[TargetResult], suite: str = "tinydeploy.device.verify") -> str:
    """JUnit XML with one test case per target."""
    failures = sum(not v.met for v in verdicts)
    cases = []
    for v in verdicts:
        name = quoteattr(v.name)
        body = "" if v.met else f'<failure message={quoteattr(v.describe())}>{escape(v.basis)}</failure>'
        cases.append(f'  <testcase classname="{suite}" name={name}>{body}</testcase>')
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="{suite}" tests="{len(verdicts)}" '
            f'failures="{failures}" errors="0">\n' + "\n".join(cases) + "\n</testsuite>\n")
