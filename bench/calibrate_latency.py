"""Derive the boards' cycles-per-MAC coefficients from published ESP-NN figures.

The esp-tflite-micro README publishes person-detection latency (int8 VWW,
invoke only) per chip, with and without ESP-NN (see shared REFERENCE.md):
ESP32-S3 240 MHz 2300/54 ms, ESP32 240 MHz 4084/380 ms, ESP32-C3 160 MHz
3355/426 ms. The person-detection model is MobileNet v1 (alpha 0.25) on
96x96x1 input with 2 classes; this script builds that architecture with
tf_keras (random weights: MACs depend only on shapes), converts it to int8,
counts its MACs with tinydeploy's own counter and prints cycles per MAC.

Run: .venv/bin/python bench/calibrate_latency.py
"""

import numpy as np

from tinydeploy.runtime import _tf
from tinydeploy.costs import counts
from tinydeploy.optimize.convert import to_int8_tflite
from tinydeploy.core.model import parse_model

PUBLISHED_MS = {  # chip: (MHz, ms without ESP-NN, ms with ESP-NN)
    "ESP32-S3": (240, 2300, 54),
    "ESP32": (240, 4084, 380),
    "ESP32-C3": (160, 3355, 426),
}


def main():
    keras = _tf.keras()
    net = keras.applications.MobileNet(input_shape=(96, 96, 1), alpha=0.25, weights=None, classes=2)
    rng = np.random.default_rng(0)
    model = parse_model(to_int8_tflite(net, rng.random((8, 96, 96, 1), dtype=np.float32)))
    layers = counts.layer_costs(model)
    total = sum(layer.macs for layer in layers)
    by_op = {}
    for layer in layers:
        by_op[layer.op] = by_op.get(layer.op, 0) + layer.macs
    print(f"MobileNet v1 0.25, 96x96x1: {total:,} MACs ({by_op})")
    print(f"{'chip':10} {'MHz':>4} {'ansi cyc/MAC':>13} {'esp-nn cyc/MAC':>15}")
    for chip, (mhz, ansi_ms, esp_nn_ms) in PUBLISHED_MS.items():
        cycles = lambda ms: ms * 1e-3 * mhz * 1e6 / total  # noqa: E731
        print(f"{chip:10} {mhz:>4} {cycles(ansi_ms):>13.2f} {cycles(esp_nn_ms):>15.2f}")


if __name__ == "__main__":
    main()
