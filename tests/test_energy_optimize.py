"""optimize seeks the energy targets (--max-energy-uj, --max-power-mw at --rate-hz): each engine's
cost carries the energy estimate and is judged on it, the seek stage shrinks a model that misses,
and when no model keeps the budget at the asked rate, exit 1 names the highest rate that can."""

import json
import re

import pytest

from tinydeploy.cli import main
from tinydeploy.core.boards import get_board
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import load_model
from tinydeploy.core.targets import TargetResult, Targets
from tinydeploy.costs import energy
from tinydeploy.optimize import energy_seek, engine_choice
from tinydeploy.optimize.metrics import StageMetrics

S3 = "esp32-s3-devkitc-1"


def _ceiling_hz(board_name: str, budget_mw: float = 1.0) -> float:
    """The highest rate any model could keep within the budget: an inference of no time at all."""
    return energy.max_rate(get_board(board_name), 1e-9, budget_mw).max_rate_hz


@pytest.mark.unit
def test_energy_targets_need_a_board_with_power_figures():
    energy_seek.check_board(get_board(S3), Targets(max_power_mw=1))
    energy_seek.check_board(get_board("qemu-riscv32"), Targets())  # not asked: nothing to refuse
    with pytest.raises(BadInput, match=r"--max-energy-uj and --max-power-mw can't be sought: estimate unavailable: "
                                       r"board qemu-riscv32 has no power profile"):
        energy_seek.check_board(get_board("qemu-riscv32"), Targets(max_energy_uj=5, max_power_mw=1))


@pytest.mark.unit
@pytest.mark.parametrize("rate, said", [(0.99771233, "0.997"), (12.349, "12.3"), (0.0009999, "0.000999"),
                                        (5.0, "5"), (0.0, "0")])
def test_a_rate_that_can_be_met_is_rounded_down(rate, said):
    assert energy_seek.rate_at_most(rate) == said and float(said) <= rate


@pytest.mark.host
def test_every_engine_is_judged_on_its_energy_estimate(int8_cnn):
    """The faster engine spends less energy an inference: with a power budget only one of them
    keeps at a rate, the energy targets choose the engine as the latency target does."""
    board = get_board("esp32-c3-devkitm-1")
    model = load_model(int8_cnn)
    loose = engine_choice.cost_all(model, board, Targets(max_latency_ms=1e6, max_arena_kb=1e3, max_model_kb=1e3))
    assert all(c.energy["available"] and not any(v.name in ("energy", "power") for v in c.verdicts) for c in loose)
    fast, slow = sorted(loose, key=lambda c: c.latency_ms)
    assert fast.energy["energy_uj"] < slow.energy["energy_uj"]
    # a rate between the two engines' highest rates within 1 mW: only the faster keeps it
    rate = (fast.energy["max_rate_hz"] + slow.energy["max_rate_hz"]) / 2
    targets = Targets(max_latency_ms=1e6, max_arena_kb=1e3, max_model_kb=1e3, max_power_mw=1.0, rate_hz=rate,
                      max_energy_uj=slow.energy["energy_uj"] * 1.5)
    judged = {c.engine: c for c in engine_choice.cost_all(model, board, targets)}
    assert judged[fast.engine].met and not judged[slow.engine].met
    power = next(v for v in judged[slow.engine].verdicts if v.name == "power")
    assert f"the highest rate within 1 mW is {slow.energy['max_rate_hz']:.3g} Hz" in power.note
    assert engine_choice.choose(list(judged.values()))[0].engine == fast.engine
    # the seek stage's scaled costs estimate energy again from the scaled latency
    halved = judged[slow.engine].scaled(1.0, 0.5, targets)
    assert halved.energy["energy_uj"] == pytest.approx(slow.energy["energy_uj"] / 2, rel=1e-3)


def _metrics(stage: str, max_rate_hz: float, met: bool) -> StageMetrics:
    cost = engine_choice.EngineCost("tflm", 1, 1, 0.1, "estimate", energy={
        "available": True, "max_rate_hz": max_rate_hz, "max_rate_mode": "light"})
    power = TargetResult("power", 0.5 if met else 1.5, 1.0, "mW", "estimate")
    return StageMetrics(accuracy=0.9, engine="tflm", engine_why="", engines=[cost], flash_bytes=1, arena_bytes=1,
                        latency_ms=0.1, latency_basis="estimate", model_bytes=1, host_arena_bytes=1, macs=1,
                        params=1, targets=[power], meets_targets=met, stage=stage)


@pytest.mark.unit
def test_the_highest_rate_is_the_fastest_models_and_said_only_on_a_miss():
    targets = Targets(max_power_mw=1.0, rate_hz=2.0)
    arch, seek = _metrics("arch", 0.9, False), {"tried": [{"blocks": 1, "stride": 4, "latency_ms": 0.005,
                                                           "max_rate_hz": 0.9977}]}
    said = energy_seek.highest_rate(targets, arch, [arch], seek)
    assert said == ("no model found keeps 1 mW at 2 Hz; the chosen model (arch) keeps it up to 0.9 Hz (light sleep "
                    "between inferences), and the fastest found, a model the seek stage costed untrained (1 "
                    "blocks, stride 4, 0.005 ms), up to 0.998 Hz: the highest rate that can be met is 0.997 Hz")
    assert energy_seek.highest_rate(targets, arch, [arch], None).endswith("can be met is 0.9 Hz")
    assert energy_seek.highest_rate(targets, _metrics("arch", 3.0, True), [], seek) == ""
    assert energy_seek.highest_rate(Targets(), arch, [arch], seek) == ""  # no power target asked


@pytest.mark.slow
def test_optimize_meets_a_power_budget_at_a_rate_it_can_keep_by_shrinking_the_model(tmp_path):
    """On the digits (16x16, fast budget) for the S3 at 1 mW, at a rate just under what any model
    could keep: the model optimize picks without the power target would miss it; with the target
    it picks a faster one (the arch stage's width search or the seek stage) that keeps it."""
    rate = round(0.95 * _ceiling_hz(S3), 4)
    common = ["optimize", "--data", "digits", "--image-size", "16", "--budget", "fast", "--stages", "arch,seek",
              "--min-accuracy", "0.5", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "free")]) == 0
    free = json.loads((tmp_path / "free" / "report.json").read_text())["chosen"]
    unbound = energy.max_rate(get_board(S3), free["latency_ms"], 1.0).max_rate_hz
    assert unbound < rate  # the premise: without the target, the model would miss it
    out = tmp_path / "out"
    assert main([*common, "--out", str(out), "--max-power-mw", "1", "--rate-hz", str(rate)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["met"] and report["targets"]["max_power_mw"] == 1 and report["targets"]["rate_hz"] == rate
    chosen = report["chosen"]
    assert chosen["latency_ms"] < free["latency_ms"]
    figures = chosen["energy"]
    assert figures["rate_hz"] == rate and figures["average_mw"] <= 1.0 and figures["max_rate_hz"] >= rate
    # the report's figures are the energy model's for the chosen latency
    again = energy.average_power(get_board(S3), chosen["latency_ms"], rate)
    assert figures["average_mw"] == pytest.approx(again.mode(again.best).average_mw) and figures["mode"] == again.best
    assert figures["energy_uj"] == pytest.approx(energy.inference_energy(get_board(S3), chosen["latency_ms"]).energy_uj)
    stage = next(s for s in report["stages"] if s["stage"] == chosen["stage"])
    power = next(t for t in stage["targets"] if t["target"] == "power")
    assert power["met"] and power["basis"].startswith("estimate")
    for earlier in report["stages"][:-1]:  # the seek stage runs only after a miss, and only on power
        assert [t["target"] for t in earlier["targets"] if not t["met"]] == ["power"]


@pytest.mark.slow
def test_optimize_at_a_rate_no_model_can_keep_exits_1_naming_the_highest_rate(tmp_path, capsys):
    rate = round(2 * _ceiling_hz(S3), 3)
    out = tmp_path / "out"
    assert main(["optimize", "--data", "digits", "--image-size", "16", "--out", str(out), "--budget", "fast",
                 "--stages", "arch,seek", "--max-power-mw", "1", "--rate-hz", str(rate), "--min-accuracy", "0.5",
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    said = re.search(r"no model found keeps 1 mW at ([\d.]+) Hz; .* the highest rate that can be met is ([\d.]+) Hz",
                     err)
    assert said, err
    highest = float(said.group(2))
    report = json.loads((out / "report.json").read_text())
    fastest = max(p["max_rate_hz"] for p in report["seek"]["tried"])
    assert float(said.group(1)) == rate and highest <= fastest < _ceiling_hz(S3) < rate
    assert highest == pytest.approx(fastest, rel=1e-2)
    assert "even the smallest model of the family" in err and not report["met"]
    assert (out / "model.tflite").exists()  # the best model found is still written
