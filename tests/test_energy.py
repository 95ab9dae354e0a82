"""Board power profiles ([power]) and the energy estimates built on them (tinydeploy.costs.energy)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinydeploy.core.boards import POWER_FIGURES, get_board, load_boards, override_power, parse_board
from tinydeploy.core.errors import BadInput
from tinydeploy.costs import energy

pytestmark = pytest.mark.unit

ESP_BOARDS = ("esp32dev", "esp32-s3-devkitc-1", "esp32-c3-devkitm-1")


def _with_power(text: str, table: str) -> str:
    start = text.index("[power]")
    return text[:start] + table


def _profile_text(name: str = "esp32-c3-devkitm-1") -> str:
    return open(get_board(name).path, encoding="utf-8").read()


# -- profiles ---------------------------------------------------------------------------------

def test_every_esp_board_has_a_power_profile_with_its_sources():
    boards = load_boards()
    for name in ESP_BOARDS:
        power = boards[name].power
        assert power is not None and set(power.figures()) == set(POWER_FIGURES)
        assert power.supply_v == 3.3
        assert 0 < power.deep_sleep_ma < power.light_sleep_ma < power.idle_ma <= power.active_ma
        assert power.deep_wake_ms > power.light_wake_ms > 0
        assert "chip" in power.source.lower() or "board" in power.source.lower()
        assert boards[name].to_dict()["power"]["active_ma"] == power.active_ma
    # every figure line of every shipped table carries a comment saying where it comes from
    for name in ESP_BOARDS:
        table = _profile_text(name).split("[power]", 1)[1]
        figure_lines = [line for line in table.splitlines() if line.split("=")[0].strip() in POWER_FIGURES]
        assert len(figure_lines) == len(POWER_FIGURES) and all("#" in line for line in figure_lines)


def test_the_emulated_board_has_no_power_profile_and_estimates_say_so():
    board = get_board("qemu-riscv32")
    assert board.power is None
    report = energy.energy_report(board, 1.0)
    assert not report.available
    assert report.reason.startswith("estimate unavailable: board qemu-riscv32 has no power profile")
    with pytest.raises(BadInput, match="estimate unavailable: board qemu-riscv32 has no power profile"):
        energy.average_power(board, 1.0, 1.0)


def test_a_profile_without_power_is_valid():
    text = _profile_text()
    board = parse_board(text[:text.index("[power]")], "no-power.toml")
    assert board.power is None and board.to_dict()["power"] is None


@pytest.mark.parametrize("line, field, expected", [
    ("supply_v = 0.5", "power.supply_v", "accepted: 1.0-5.5 V"),
    ("supply_v = 6", "power.supply_v", "accepted: 1.0-5.5 V"),
    ("active_ma = nan", "power.active_ma", "finite"),
    ("idle_ma = inf", "power.idle_ma", "finite"),
    ("active_ma = 0", "power.active_ma", "above 0"),
    ("active_ma = 5000", "power.active_ma", "below 2000 mA"),
    ("deep_sleep_ma = -0.01", "power.deep_sleep_ma", "above 0"),
    ("light_sleep_ma = 40", "power.light_sleep_ma", "not below 'power.active_ma'"),
    ("idle_ma = 30", "power.idle_ma", "above 'power.active_ma'"),
    ("light_wake_ms = -1", "power.light_wake_ms", "0 or more"),
    ('deep_wake_ms = "slow"', "power.deep_wake_ms", "must be a number"),
    ("deep_wake_ms = true", "power.deep_wake_ms", "must be a number"),
])
def test_bad_power_figures_are_bad_input_naming_the_field(line, field, expected):
    key = line.split("=")[0].strip()
    text = _profile_text()
    lines = [line if raw.split("=")[0].strip() == key and raw.strip() and not raw.startswith("#") else raw
             for raw in text.splitlines()]
    with pytest.raises(BadInput) as err:
        parse_board("\n".join(lines), "bad.toml")
    assert f"'{field}'" in str(err.value) and expected in str(err.value) and "bad.toml" in str(err.value)


def test_missing_and_unknown_power_fields_are_all_reported():
    table = '[power]\nsupply_v = 3.3\nactive_mw = 80\n'
    with pytest.raises(BadInput) as err:
        parse_board(_with_power(_profile_text(), table), "partial.toml")
    message = str(err.value)
    for name in set(POWER_FIGURES) - {"supply_v"}:
        assert f"'power.{name}' missing" in message
    assert "'power.active_mw' is unknown" in message and "'power.source' missing" in message


def test_a_users_profile_overrides_the_shipped_power_figures(tmp_path):
    text = _profile_text().replace("active_ma = 26.8", "active_ma = 31.0  # measured on my board")
    (tmp_path / "esp32-c3-devkitm-1.toml").write_text(text)
    board = get_board("esp32-c3-devkitm-1", extra_dirs=(tmp_path,))
    assert board.power.active_ma == 31.0 and board.shadows.endswith("esp32-c3-devkitm-1.toml")


def test_override_power_replaces_figures_and_keeps_the_checks():
    board = get_board("esp32-s3-devkitc-1")
    measured = override_power(board, {"active_ma": 48.0, "light_wake_ms": 1.0})
    assert measured.power.active_ma == 48.0 and measured.power.light_wake_ms == 1.0
    assert measured.power.idle_ma == board.power.idle_ma and measured.power.overridden == ("active_ma", "light_wake_ms")
    assert energy.inference_energy(measured, 1.0).energy_uj == pytest.approx(3.3 * 48.0)
    with pytest.raises(BadInput, match="unknown power figure 'active_mw'; accepted: supply_v"):
        override_power(board, {"active_mw": 1})
    with pytest.raises(BadInput, match="'power.supply_v' is nan"):
        override_power(board, {"supply_v": math.nan})
    emulated = get_board("qemu-riscv32")
    with pytest.raises(BadInput, match="'power.active_ma' missing"):
        override_power(emulated, {"supply_v": 3.3})
    given_all = override_power(emulated, dict(get_board("esp32-c3-devkitm-1").power.figures()))
    assert given_all.power.source == "figures given by the user" and energy.energy_report(given_all, 1.0).available


# -- estimates --------------------------------------------------------------------------------

def _board(**figures):
    """A C3 profile with some figures replaced, for hand-checkable numbers."""
    return override_power(get_board("esp32-c3-devkitm-1"), figures)


def test_energy_of_one_inference_is_active_power_times_latency():
    board = _board(supply_v=3.0, active_ma=20.0, idle_ma=15.0)
    result = energy.inference_energy(board, 2.5)
    assert result.energy_uj == pytest.approx(150.0)  # 3 V * 20 mA * 2.5 ms
    assert result.basis == "estimate" and result.to_dict()["figures"] == {"supply_v": 3.0, "active_ma": 20.0}


def test_average_power_counts_wake_time_and_energy():
    board = _board(supply_v=2.0, active_ma=10.0, idle_ma=5.0, light_sleep_ma=0.5, deep_sleep_ma=0.01,
                   light_wake_ms=1.0, light_wake_ma=4.0, deep_wake_ms=50.0, deep_wake_ma=6.0)
    cycle = energy.average_power(board, 2.0, 4.0)  # period 250 ms
    # awake: 20 mW * 2 ms + 10 mW * 248 ms = 2520 µJ per 250 ms
    assert cycle.mode("awake").average_mw == pytest.approx(2520 / 250)
    # light: 40 µJ + wake 8 mW * 1 ms + 1 mW * 247 ms = 295 µJ
    assert cycle.mode("light").cycle_energy_uj == pytest.approx(295.0)
    # deep: 40 + 12 mW * 50 ms + 0.02 mW * 198 ms = 643.96 µJ
    assert cycle.mode("deep").average_mw == pytest.approx(643.96 / 250)
    assert cycle.best == "light" and cycle.to_dict()["basis"] == "estimate"
    assert cycle.figures["light_wake_ma"] == 4.0


def test_a_rate_faster_than_inference_plus_wake_makes_that_mode_impossible():
    board = _board(deep_wake_ms=100.0, light_wake_ms=2.0)
    cycle = energy.average_power(board, 5.0, 20.0)  # period 50 ms
    deep = cycle.mode("deep")
    assert not deep.possible and deep.average_mw is None
    assert "deep sleep impossible at 20 Hz" in deep.reason and "105 ms" in deep.reason
    assert cycle.mode("light").possible and cycle.best == "light"
    none = energy.average_power(board, 5.0, 1000.0)  # period 1 ms < the inference itself
    assert none.best is None and not any(m.possible for m in none.modes)


@pytest.mark.parametrize("kwargs, name", [
    ({"rate_hz": 0}, "rate_hz"), ({"rate_hz": -1}, "rate_hz"), ({"rate_hz": math.nan}, "rate_hz"),
    ({"latency_ms": math.inf}, "latency_ms"), ({"latency_ms": 0}, "latency_ms"),
])
def test_bad_rates_and_latencies_are_bad_input_naming_the_value(kwargs, name):
    args = {"latency_ms": 1.0, "rate_hz": 1.0, **kwargs}
    with pytest.raises(BadInput, match=f"{name} is "):
        energy.average_power(get_board("esp32dev"), **args)


@pytest.mark.parametrize("budget", [0, -1.0, math.nan])
def test_a_bad_budget_is_bad_input(budget):
    with pytest.raises(BadInput, match="budget_mw is"):
        energy.max_rate(get_board("esp32dev"), 1.0, budget)
    with pytest.raises(BadInput, match="method 'newton' is unknown; accepted: closed-form, bisection"):
        energy.max_rate(get_board("esp32dev"), 1.0, 1.0, method="newton")


def test_max_rate_meets_the_budget_exactly_and_both_methods_agree():
    board = get_board("esp32-s3-devkitc-1")
    closed = energy.max_rate(board, 0.5, 1.0)
    bisected = energy.max_rate(board, 0.5, 1.0, method="bisection")
    assert closed.mode("awake").max_rate_hz == 0 and closed.mode("awake").limited_by == "resting power"
    for mode in ("light", "deep"):
        rate = closed.mode(mode).max_rate_hz
        assert rate == pytest.approx(bisected.mode(mode).max_rate_hz, rel=1e-9)
        assert energy.average_power(board, 0.5, rate).mode(mode).average_mw == pytest.approx(1.0, rel=1e-9)
        assert energy.average_power(board, 0.5, rate * 1.001).mode(mode).average_mw > 1.0
    assert closed.best == "light" and closed.max_rate_hz == closed.mode("light").max_rate_hz
    assert closed.to_dict()["basis"] == "estimate" and closed.figures["light_sleep_ma"] == 0.24


def test_a_generous_budget_allows_back_to_back_inference():
    board = _board()
    budget = energy.max_rate(board, 10.0, 500.0)
    awake = budget.mode("awake")
    assert awake.limited_by == "back-to-back" and awake.max_rate_hz == pytest.approx(100.0)


def test_no_mode_fits_a_budget_below_every_resting_power():
    budget = energy.max_rate(get_board("esp32dev"), 1.0, 0.01)  # deep sleep rests at 0.033 mW
    assert budget.best is None and budget.max_rate_hz == 0
    assert all(m.limited_by == "resting power" for m in budget.modes)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(latency=st.floats(0.01, 500.0), budget=st.floats(0.05, 300.0),
       board_name=st.sampled_from(ESP_BOARDS))
def test_closed_form_and_bisection_agree_everywhere(latency, budget, board_name):
    board = get_board(board_name)
    closed = energy.max_rate(board, latency, budget)
    bisected = energy.max_rate(board, latency, budget, method="bisection")
    for a, b in zip(closed.modes, bisected.modes):
        assert a.limited_by == b.limited_by
        assert a.max_rate_hz == pytest.approx(b.max_rate_hz, rel=1e-9, abs=1e-12)
        if a.limited_by == "budget":
            assert a.average_mw == pytest.approx(budget, rel=1e-6)


def test_average_power_falls_with_the_rate_towards_the_resting_power():
    board = get_board("esp32-c3-devkitm-1")
    slow, fast = energy.average_power(board, 1.0, 0.01), energy.average_power(board, 1.0, 1.0)
    for mode in ("light", "deep"):
        assert slow.mode(mode).average_mw < fast.mode(mode).average_mw
    rest = board.power.supply_v * board.power.deep_sleep_ma
    # at one inference every few hours the reboot's energy fades and deep sleep's own current is left
    assert energy.average_power(board, 1.0, 1e-4).mode("deep").average_mw == pytest.approx(rest, rel=0.05)
    # at 0.01 Hz the 100 ms reboot (6.6 mJ) still costs four times the resting power
    assert slow.mode("deep").average_mw > 4 * rest


def test_energy_report_puts_it_together():
    board = get_board("esp32dev")
    report = energy.energy_report(board, 0.8, rates_hz=(0.1, 1.0, 10.0))
    assert report.available and [r.rate_hz for r in report.rates] == [0.1, 1.0, 10.0]
    assert report.inference.energy_uj == pytest.approx(3.3 * 50.0 * 0.8)
    assert report.budget.budget_mw == energy.TARGET_MW and report.source == board.power.source
    assert report.to_dict()["basis"] == "estimate"


def test_the_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    boards = [(get_board(name), 0.5) for name in ESP_BOARDS] + [(get_board("qemu-riscv32"), 0.5)]
    path = energy.plot_power_vs_rate(boards, tmp_path / "power.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    with pytest.raises(BadInput, match="none of the boards has a power profile"):
        energy.plot_power_vs_rate([(get_board("qemu-riscv32"), 0.5)], tmp_path / "none.png")


# -- energy as the fourth target (tinydeploy.costs.figures, tinydeploy.core.targets) ---------------

def test_figures_energy_takes_the_estimate_from_the_latency_and_the_power_profile():
    from tinydeploy.costs import figures
    board = get_board("esp32-s3-devkitc-1")
    found = figures.energy(board, 0.795, "estimate (the board's table)", rate_hz=1.0, budget_mw=1.0)
    report = energy.energy_report(board, 0.795, (1.0,), 1.0)
    assert found.energy_uj == report.inference.energy_uj == pytest.approx(3.3 * 31.7 * 0.795)
    assert found.mode == report.rates[0].best == "light" and found.mode_name == "light sleep"
    assert found.average_mw == report.rates[0].mode("light").average_mw
    assert (found.max_rate_hz, found.max_rate_mode) == (report.budget.max_rate_hz, "light")
    assert found.energy_basis.startswith("estimate (esp32-s3-devkitc-1 power profile")
    assert "latency estimate (the board's table)" in found.energy_basis
    assert found.budget_note == f"the highest rate within 1 mW is {report.budget.max_rate_hz:.3g} Hz (light sleep)"
    assert found.to_dict()["detail"]["rates"][0]["rate_hz"] == 1.0


def test_figures_energy_without_a_power_profile_or_a_latency_says_why():
    from tinydeploy.costs import figures
    emulated = figures.energy(get_board("qemu-riscv32"), 1.2, "estimate")
    assert not emulated.available and emulated.average_mw is None
    assert emulated.reason.startswith("estimate unavailable: board qemu-riscv32 has no power profile")
    assert emulated.to_dict()["available"] is False and emulated.budget_note == ""
    uncosted = figures.energy(get_board("esp32dev"), 0.0, "estimate (no operator costed)")
    assert not uncosted.available and "no latency above 0 ms" in uncosted.reason


@pytest.mark.parametrize("rate", [0, -1.0, math.nan, math.inf])
def test_a_bad_rate_is_bad_input_naming_the_option(rate):
    from tinydeploy.costs import figures
    from tinydeploy.core.targets import Targets
    with pytest.raises(BadInput, match=r"--rate-hz is a positive number of inferences per second, got"):
        figures.energy(get_board("esp32dev"), 1.0, "estimate", rate_hz=rate)
    with pytest.raises(BadInput, match="--rate-hz is"):
        figures.energy(get_board("qemu-riscv32"), 1.0, "estimate", rate_hz=rate)  # checked before the profile
    with pytest.raises(BadInput, match="--rate-hz is"):
        Targets(rate_hz=rate)


def test_a_rate_no_sleep_mode_keeps_has_no_average_and_says_the_fastest():
    from tinydeploy.costs import figures
    found = figures.energy(get_board("esp32dev"), 5.0, "estimate", rate_hz=500.0)
    assert found.available and found.average_mw is None and found.mode is None
    assert found.reason == ("no sleep mode keeps 500 Hz: one inference takes 5 ms, so at most 200 Hz "
                            "(resting awake, with no wake time)")


def _targets(**budgets):
    from tinydeploy.core.targets import Targets
    return Targets(**budgets)


def test_the_energy_targets_are_judged_only_when_set():
    from tinydeploy.core.targets import check
    from tinydeploy.costs import figures
    found = figures.energy(get_board("esp32-s3-devkitc-1"), 0.795, "estimate")
    judged = check(_targets(), arena_bytes=1024, model_bytes=1024, latency_ms=0.5, arena_basis="a",
                   latency_basis="b", energy=found)
    assert [r.name for r in judged] == ["arena", "model", "latency"]


def test_energy_and_power_are_met_or_missed_with_their_basis():
    from tinydeploy.core.targets import check_energy
    from tinydeploy.costs import figures
    board = get_board("esp32-s3-devkitc-1")
    met = check_energy(_targets(max_energy_uj=100, max_power_mw=2.0),
                       figures.energy(board, 0.795, "estimate", rate_hz=1.0, budget_mw=2.0))
    assert [(r.name, r.met, r.unit) for r in met] == [("energy", True, "µJ"), ("power", True, "mW")]
    assert met[0].measured == pytest.approx(83.16495) and met[0].basis.startswith("estimate (")
    assert met[1].note == "average at 1 Hz, light sleep between inferences" and met[1].measured == pytest.approx(1.08217, rel=1e-5)
    missed = check_energy(_targets(max_energy_uj=50, max_power_mw=1.0, rate_hz=2.0),
                          figures.energy(board, 0.795, "estimate", rate_hz=2.0, budget_mw=1.0))
    assert not any(r.met for r in missed)
    power = missed[1].describe()  # light sleep: (83.2 + 209.2 µJ busy + 0.792 mW x 497.2 ms) / 500 ms
    assert power.startswith("power 1.37234 mW (needs <= 1 mW); average at 2 Hz, light sleep between inferences; "
                            "the highest rate within 1 mW is 0.717 Hz (light sleep)")
    assert missed[1].to_dict()["note"].endswith("0.717 Hz (light sleep)")


def test_an_energy_target_without_a_power_profile_is_missed_with_the_reason_not_a_crash():
    from tinydeploy.core.targets import TargetResult, check_energy
    from tinydeploy.costs import figures
    verdicts = check_energy(_targets(max_energy_uj=100, max_power_mw=1.0),
                            figures.energy(get_board("qemu-riscv32"), 1.0, "estimate"))
    assert [(r.name, r.met, r.measured, r.basis) for r in verdicts] == [("energy", False, None, "unavailable"),
                                                                         ("power", False, None, "unavailable")]
    assert verdicts[0].describe().startswith("energy: estimate unavailable: board qemu-riscv32 has no power profile")
    assert TargetResult.from_dict(verdicts[1].to_dict()) == verdicts[1]


def test_a_power_target_at_an_impossible_rate_is_missed_naming_the_fastest_and_the_budgets_rate():
    from tinydeploy.core.targets import check_energy
    from tinydeploy.costs import figures
    (power,) = check_energy(_targets(max_power_mw=1.0, rate_hz=500.0),
                            figures.energy(get_board("esp32dev"), 5.0, "estimate", rate_hz=500.0))
    assert not power.met and power.measured is None
    assert "no sleep mode keeps 500 Hz" in power.describe() and "the highest rate within 1 mW is" in power.describe()


def _measured(**changes):
    """results.json's power section as bench --power-monitor writes it (PowerMeasurement.to_dict)."""
    return {"monitor": "ppk2 on /dev/ttyACM0", "inferences": 20, "windows": 20, "energy_uj": 120.0,
            "inference_ms": 1.0, "active_ma": 36.4, "idle_ma": 31.0, "idle_s": 0.49, "sample_rate_hz": 100_000,
            "samples": 52_000, "voltage_v": 3.3, "basis": "measured", **changes}


def test_measured_energy_is_the_monitors_and_the_average_uses_it_with_the_profiles_sleep():
    from tinydeploy.costs import figures
    board = get_board("esp32-s3-devkitc-1")
    found = figures.measured_energy(board, _measured(), rate_hz=1.0, budget_mw=1.0)
    assert found.energy_uj == 120.0
    assert found.energy_basis == "measured (ppk2 on /dev/ttyACM0, 20 inferences at 100 kS/s, the marked windows only)"
    # the same as an estimate whose active current gives 120 µJ in the measured 1 ms, idle as measured
    same = figures.energy(override_power(board, {"active_ma": 120.0 / 3.3, "idle_ma": 31.0}), 1.0, "", 1.0, 1.0)
    assert found.average_mw == pytest.approx(same.average_mw) and found.mode == same.mode == "light"
    assert found.power_basis.startswith("estimate from the measured energy and idle current (ppk2 on /dev/ttyACM0)")
    assert found.max_rate_hz == pytest.approx(same.max_rate_hz)


def test_measured_energy_without_a_board_keeps_the_energy_and_says_why_there_is_no_average():
    from tinydeploy.costs import figures
    for board, why in ((None, "no board profile to take sleep and wake figures from (give --board)"),
                       (get_board("qemu-riscv32"), "estimate unavailable: board qemu-riscv32 has no power profile")):
        found = figures.measured_energy(board, _measured())
        assert found.energy_uj == 120.0 and found.average_mw is None and why in found.reason
    odd = figures.measured_energy(get_board("esp32dev"), _measured(idle_ma=500.0))  # idle above active
    assert odd.energy_uj == 120.0 and odd.average_mw is None and "don't fit the esp32dev sleep figures" in odd.reason


def _results(**changes):
    return {"virtual": False, "device": {"board": "esp32-s3-devkitc-1"}, "arena_used_bytes": 2048,
            "model_bytes": 4096, "complete": True, "latency_us": {"median": 800, "basis": "device m-lap-us stamps"},
            **changes}


def test_verify_judges_measured_energy_where_there_is_one_and_labels_estimates_otherwise():
    from tinydeploy.device.verify import junit_xml, verify
    targets = _targets(max_latency_ms=10, max_energy_uj=100, max_power_mw=1.0)
    estimated = {v.name: v for v in verify(_results(), targets)}  # the board the results name
    assert estimated["energy"].met and estimated["energy"].measured == pytest.approx(3.3 * 31.7 * 0.8, rel=1e-3)
    assert estimated["energy"].basis.startswith("estimate (esp32-s3-devkitc-1 power profile")
    assert "latency median, device m-lap-us stamps" in estimated["energy"].basis
    measured = {v.name: v for v in verify(_results(power=_measured()), targets)}
    assert not measured["energy"].met and measured["energy"].measured == 120.0
    assert measured["energy"].basis.startswith("measured (ppk2")
    xml = junit_xml(verify(_results(power=_measured()), targets))
    assert xml.count("<testcase") == 5 and 'name="energy"><failure message="energy 120 µJ (needs &lt;= 100 µJ)"' in xml
    other = {v.name: v for v in verify(_results(), targets, board=get_board("esp32dev"))}
    assert other["energy"].basis.startswith("estimate (esp32dev power profile")


def test_verify_makes_no_estimate_from_the_virtual_devices_host_time_or_an_unknown_board():
    from tinydeploy.device.verify import verify
    targets = _targets(max_latency_ms=10, max_energy_uj=100)
    virtual = _results(virtual=True, device={"board": "virtual"})
    (unnamed,) = [v for v in verify(virtual, targets) if v.name == "energy"]
    assert not unnamed.met and "the results name board 'virtual', which is no known board profile" in unnamed.detail
    (host,) = [v for v in verify(virtual, targets, board=get_board("esp32dev")) if v.name == "energy"]
    assert not host.met and "the virtual device's latency is host time" in host.detail
    (deployed,) = [v for v in verify(virtual, targets, latency_estimate_ms=0.5, board=get_board("esp32dev"))
                   if v.name == "energy"]
    assert deployed.met and "latency estimate for the board (no board attached)" in deployed.basis


def test_a_search_trial_line_shows_the_estimated_energy_beside_the_latency():
    from tinydeploy.display import search_trial_line
    line = search_trial_line("trial", {"trial": 3, "accuracy": 0.9, "latency_ms": 0.5, "energy_uj": 52.3,
                                       "arena_bytes": 4096})
    assert line == "trial 3: int8 accuracy 90.0% · 0.500 ms est. · 52.3 µJ est. · 4,096 B arena"
    unpowered = search_trial_line("trial", {"trial": 3, "accuracy": 0.9, "latency_ms": 0.5, "energy_uj": None,
                                            "arena_bytes": 4096})
    assert "µJ" not in unpowered
