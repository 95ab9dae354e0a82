"""Energy estimates for the demo model on the three ESP32 boards: the fourth target (1 mW).

For each board: the model's estimated latency (tinydeploy.costs.counts.latency_estimate_ms),
the energy of one inference, the average power at 0.1, 1 and 10 inferences a second resting
awake, in light sleep or in deep sleep, and the highest rate that keeps 1 mW, with the
profile figures used. Every figure is an estimate from the boards' [power] tables.

Run: .venv/bin/python bench/energy.py [--model M.tflite] [--budget-mw 1] [--plot docs/energy-power-vs-rate.png]
Without --model it builds the digits demo's architecture (32x32x1, optimize's starting point)
with stand-in weights: its operators and MACs, hence its latency estimate, are the trained model's.
"""

import argparse
import tempfile
from pathlib import Path

from tinydeploy.core.boards import get_board
from tinydeploy.core.model import load_model
from tinydeploy.costs.counts import latency_estimate_ms, layer_costs
from tinydeploy.costs.energy import MODE_NAMES, SLEEP_MODES, energy_report, plot_power_vs_rate

BOARDS = ("esp32dev", "esp32-s3-devkitc-1", "esp32-c3-devkitm-1")
RATES_HZ = (0.1, 1.0, 10.0)


def demo_model(folder: Path) -> Path:
    from tinydeploy.core import data
    from tinydeploy.optimize.architectures import default_arch, untrained_model
    digits = data.load("digits", image_size=32, seed=0)
    model = untrained_model(default_arch(digits.input_shape), digits)
    path = folder / "demo-arch.tflite"
    path.write_bytes(model.data)
    return path


def _mw(value) -> str:
    return "impossible" if value is None else f"{value:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an int8 .tflite (default: the demo architecture, built here)")
    parser.add_argument("--budget-mw", type=float, default=1.0)
    parser.add_argument("--plot", help="write average power against rate to this PNG")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else demo_model(Path(tmp))
        model = load_model(path)
    macs = sum(layer.macs for layer in layer_costs(model))
    print(f"model: {'demo architecture (digits, 32x32x1)' if not args.model else path} · {macs:,} MACs · "
          f"every figure below is an estimate")
    cases = []
    for name in BOARDS:
        board = get_board(name)
        latency = latency_estimate_ms(model, board)
        cases.append((board, latency))
        report = energy_report(board, latency, RATES_HZ, args.budget_mw)
        print(f"\n== {board.name} ({board.chip} at {board.cpu_mhz} MHz) ==")
        if not report.available:
            print(report.reason)
            continue
        print(f"latency {latency:.3f} ms ({board.estimate_basis('tflm')}) · "
              f"{report.inference.energy_uj:.1f} uJ per inference at {report.inference.active_mw:.0f} mW")
        print(f"{'average mW at':16}" + "".join(f"{r:>12g} Hz" for r in RATES_HZ))
        for mode in SLEEP_MODES:
            row = [cycle.mode(mode).average_mw for cycle in report.rates]
            print(f"{MODE_NAMES[mode]:16}" + "".join(f"{_mw(v):>15}" for v in row))
        print(f"{'best':16}" + "".join(f"{MODE_NAMES[c.best] if c.best else '-':>15}" for c in report.rates))
        budget = report.budget
        per_mode = "; ".join(f"{MODE_NAMES[m.mode]} {m.max_rate_hz:.3g} Hz ({m.limited_by})" for m in budget.modes)
        best = f"{budget.max_rate_hz:.3g} Hz with {MODE_NAMES[budget.best]}" if budget.best else "no rate"
        print(f"highest rate within {args.budget_mw:g} mW: {best} — {per_mode}")
        figures = board.power.figures()
        print("profile figures: " + ", ".join(f"{k} {v:g}" for k, v in figures.items()))
    if args.plot:
        written = plot_power_vs_rate(cases, args.plot, args.budget_mw)
        print(f"\nplot: {written} ({written.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
