"""Engine choice: each engine's cost of a model on a board, and which one is chosen and why."""

import json

import pytest

from tinydeploy.optimize import engine_choice as engines
from tinydeploy.core.boards import get_board
from tinydeploy.core.model import load_model
from tinydeploy.core.targets import TargetResult, Targets


def _cost(engine, latency, limit=1.0, unavailable=None):
    verdict = TargetResult("latency", latency, limit, "ms", "estimate")
    return engines.EngineCost(engine, 1000, 1000, latency, "estimate", [verdict], unavailable)


@pytest.mark.unit
def test_the_engine_that_meets_the_targets_is_chosen_and_the_reason_names_both():
    chosen, why = engines.choose([_cost("tflm", 1.5), _cost("c", 0.8)])
    assert chosen.engine == "c"
    assert "c meets every target" in why and "tflm misses latency 1.5 ms" in why


@pytest.mark.unit
def test_when_both_meet_the_boards_first_engine_is_kept():
    chosen, why = engines.choose([_cost("tflm", 0.9), _cost("c", 0.5)])
    assert chosen.engine == "tflm" and "board's first choice" in why


@pytest.mark.unit
def test_an_engine_that_cannot_run_the_model_is_never_chosen_over_one_that_can():
    chosen, why = engines.choose([_cost("tflm", 2.0), _cost("c", 0.1, unavailable="lacks PACK")])
    assert chosen.engine == "tflm" and "c can't run it (lacks PACK)" in why


@pytest.mark.host
def test_on_the_c3_the_c_engine_is_costed_from_emulated_instructions_and_cached(int8_cnn, tmp_path, rv32_tools):
    model = load_model(int8_cnn)
    board = get_board("esp32-c3-devkitm-1")
    tflm, c = engines.cost_all(model, board, Targets(), emulate_in=tmp_path)
    cached = json.loads((tmp_path / f"{model.sha256}.json").read_text())
    assert cached["instructions"] > 0 and cached["board"] == "qemu-riscv32"
    assert c.latency_basis.startswith("estimate from emulated RV32IMC instructions at 160 MHz")
    assert c.latency_ms == pytest.approx(cached["instructions"] / 160 / 1000, abs=1e-4)
    assert tflm.latency_basis.startswith("estimate (esp32-c3-devkitm-1")
    assert c.arena_bytes < tflm.arena_bytes  # a static plan without the interpreter's structures
    cached["instructions"] = 1_600_000  # a cached count is used as it is: 10 ms at 160 MHz
    (tmp_path / f"{model.sha256}.json").write_text(json.dumps(cached))
    again = engines.cost_all(model, board, Targets(), emulate_in=tmp_path)[1]
    assert again.latency_ms == pytest.approx(10.0) and not again.met


@pytest.mark.host
def test_a_second_model_in_the_same_cache_recompiles_only_what_it_changed(int8_cnn, int8_cnn_per_tensor_dense,
                                                                           tmp_path, rv32_tools):
    first, second = load_model(int8_cnn), load_model(int8_cnn_per_tensor_dense)
    engines.emulated_instructions(first, tmp_path / "shared")
    objects = tmp_path / "shared" / "rv32-firmware" / "build"
    before = {o.name: o.stat().st_mtime_ns for o in objects.glob("*.o")}
    counted = engines.emulated_instructions(second, tmp_path / "shared")
    after = {o.name: o.stat().st_mtime_ns for o in objects.glob("*.o")}
    assert after["td_kernels.c.o"] == before["td_kernels.c.o"]  # the kernels every model shares: kept
    assert after["td_model.c.o"] != before["td_model.c.o"]
    assert counted == engines.emulated_instructions(second, tmp_path / "fresh")  # nothing stale linked in
    first_count = json.loads((tmp_path / "shared" / f"{first.sha256}.json").read_text())["instructions"]
    assert counted != first_count
    # an object a killed build left half written: the build fails, and is done once more from clean
    (objects / "td_kernels.c.o").write_bytes(b"\x7fELF half")
    (tmp_path / "shared" / f"{first.sha256}.json").unlink()
    assert engines.emulated_instructions(first, tmp_path / "shared") == first_count


@pytest.mark.host
def test_elsewhere_the_c_engine_latency_is_the_fitted_estimate_and_says_so(int8_cnn):
    tflm, c = engines.cost_all(load_model(int8_cnn), get_board("esp32dev"), Targets())
    assert "per-operator cycles of qemu-riscv32 (c-engine cycles per MAC, per output and per layer)" in c.latency_basis
    assert "ESP32 is not emulated" in c.latency_basis and c.latency_ms > 0
