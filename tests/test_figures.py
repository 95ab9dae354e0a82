"""One answer to "what does this model cost on this board with this engine" (tinydeploy.costs.figures):
inspect, search, optimize's engine choice and the engine registry report the same figures, energy
included."""

import numpy as np
import pytest

from tinydeploy.codegen.engines import ENGINES, Prepared
from tinydeploy.codegen.frameworks import FRAMEWORKS
from tinydeploy.core import data
from tinydeploy.core.boards import get_board
from tinydeploy.core.model import load_model
from tinydeploy.core.targets import Targets
from tinydeploy.costs import figures, liveness, memplan
from tinydeploy.runtime.inspect import inspect


@pytest.mark.host
def test_inspect_search_optimize_and_the_registry_give_one_answer(tmp_path, monkeypatch):
    from tinydeploy.optimize import architectures as arch_lib
    from tinydeploy.optimize import engine_choice, search
    rng = np.random.default_rng(0)
    dataset = data.from_arrays(rng.random((40, 16, 16, 1), dtype=np.float32), np.arange(40) % 2, None, None, "random")
    arch = search.smallest_arch()
    path = tmp_path / "candidate.tflite"
    path.write_bytes(arch_lib.untrained_model(arch, dataset).data)
    monkeypatch.setattr(search.arch_lib, "untrained_model", lambda *_: load_model(path))  # the very same model
    model = load_model(path)
    board = get_board("esp32-s3-devkitc-1")

    inspected = inspect(path, board)
    registry = ENGINES["tflm"].cost(model, board)
    searched = search.cost(arch, dataset, board, "tflm")
    chosen = {c.engine: c for c in engine_choice.cost_all(model, board, Targets())}
    for other in (registry, searched, chosen["tflm"]):
        assert (other.arena_bytes, other.flash_bytes, other.latency_ms) == (
            inspected.cost.arena_bytes, inspected.cost.flash_bytes, inspected.latency_ms)
    assert (registry.arena_basis, registry.latency_basis) == (inspected.cost.arena_basis, inspected.cost.latency_basis)
    # Energy, from that latency and the board's power profile: one answer too.
    assert registry.energy == inspected.cost.energy and registry.energy.available
    assert searched.energy_uj == registry.energy.energy_uj  # (optimize's engine choice judges no energy)
    assert registry.energy == figures.energy(board, registry.latency_ms, registry.latency_basis)
    assert registry.energy.energy_uj == pytest.approx(board.power.supply_v * board.power.active_ma * registry.latency_ms)
    report = inspected.to_dict()
    assert report["board_arena"]["arena_bytes"] == registry.arena_bytes and report["flash_bytes"] == registry.flash_bytes
    assert report["energy"] == registry.energy.to_dict() and report["energy"]["rate_hz"] == Targets().rate_hz
    at_5_hz = inspect(path, board, Targets(rate_hz=5.0, max_power_mw=2.0)).cost.energy
    assert at_5_hz == figures.energy(board, registry.latency_ms, registry.latency_basis, 5.0, 2.0)
    # Render's arena is the same need, with its margin.
    summary = ENGINES["tflm"].summary(Prepared(model, inspected.arena), board, FRAMEWORKS[board.framework], 10.0)
    assert summary["board_arena"]["arena_bytes"] == registry.arena_bytes
    assert summary["arena_bytes"] == figures.arena_size(registry.arena_bytes, 10.0)

    c_engine = ENGINES["c"].cost(model, board, fitted=get_board(engine_choice.EMULATED_BOARD))
    c_searched = search.cost(arch, dataset, board, "c")
    for other in (c_searched, chosen["c"]):
        assert (other.arena_bytes, other.flash_bytes, other.latency_ms) == (
            c_engine.arena_bytes, c_engine.flash_bytes, c_engine.latency_ms)
    assert c_searched.energy_uj == c_engine.energy.energy_uj is not None
    assert c_engine.energy == figures.energy(board, c_engine.latency_ms, c_engine.latency_basis)
    assert searched.activation_lower_bound == c_searched.activation_lower_bound == inspected.activation_lower_bound


@pytest.mark.unit
def test_live_ranges_run_from_the_write_to_the_last_read():
    # t0 (graph input) -> op0 -> t1 -> op1 -> t2 (graph output); op1 also reads t0 and constant 9.
    ranges = liveness.live_ranges([([0], [1]), ([1, 0, 9, -1], [2])], [0], [2])
    assert ranges == {0: (0, 2), 1: (1, 2), 2: (2, 3)}  # step 0 before op0, step 3 after op1
    assert liveness.peak_live([(0, 2, 100), (1, 2, 10), (2, 3, 1)]) == 111
    assert liveness.peak_live([]) == 0


@pytest.mark.unit
def test_a_graph_output_is_never_written_over_by_the_last_step():
    # op0 makes 1 from 0; op1 views 1 as 2 (the graph output); op2, element-wise and in place,
    # reads 1 last and writes 3. 3 may not take 1's buffer: it holds the output, read after the run.
    steps = [memplan.Step([0], 1), memplan.Step([1], 2, view_of=1), memplan.Step([1], 3, in_place=True)]
    plan = memplan.plan(steps, {0: 64, 1: 64, 2: 64, 3: 64}, [0], [2, 3])
    assert plan.shares(1, 2) and not plan.shares(1, 3)


@pytest.mark.unit
def test_the_margin_rounds_up_to_16_bytes():
    assert figures.arena_size(1000, 10) == 1104  # 1100 rounded up
    assert figures.arena_size(1024, 0) == 1024
