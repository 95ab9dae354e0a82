"""How fast `--validate` streams samples, against the serial line rate.

The virtual device paces its link like a UART at the given baud (10 bits a
byte, both directions). The line-rate limit counts only the bytes the samples
themselves need on the wire: for each sample the `db` commands carry 2 hex
characters per input byte. Goal (issue: bench): >= 80% of line rate.
Run: .venv/bin/python bench/protocol_throughput.py
"""

import math
import tempfile
from pathlib import Path

import numpy as np

from tinydeploy.runtime import _tf
from tinydeploy.device.connection import CHUNK, Connection
from tinydeploy.device.validation import validate_on_device
from tinydeploy.optimize.convert import to_int8_tflite
from tinydeploy.device.virtual_device import VirtualDevice

SAMPLES = 20


def demo_model(path: Path) -> Path:
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential([layers.Input((32, 32, 1)), layers.Conv2D(8, 3, strides=2, activation="relu"),
                              layers.GlobalAveragePooling2D(), layers.Dense(10, activation="softmax")])
    path.write_bytes(to_int8_tflite(model, np.random.default_rng(0).random((8, 32, 32, 1), dtype=np.float32)))
    return path


def main():
    with tempfile.TemporaryDirectory() as tmp:
        model = demo_model(Path(tmp) / "model.tflite")
        x = np.random.default_rng(1).random((SAMPLES, 32, 32, 1), dtype=np.float32) * 16
        y = np.zeros(SAMPLES, dtype=int)
        input_bytes = int(np.prod(x.shape[1:]))
        # Bytes on the wire that carry the sample itself: "db " + 2 hex digits a byte + "%", per chunk.
        payload = sum(len("db ") + 2 * min(CHUNK, input_bytes - i) + 1 for i in range(0, input_bytes, CHUNK))
        print(f"{SAMPLES} samples of {input_bytes} bytes; {payload} payload bytes per sample on the wire")
        print(f"{'baud':>7} {'samples/s':>10} {'line-rate limit':>16} {'share':>7}")
        for baud in (115200, 921600):
            with VirtualDevice(model, baud=baud) as device:
                conn = Connection(device.open_pty(), baud, Path(tmp) / f"serial-{baud}.log", timeout=30)
                conn.sync()
                report = validate_on_device(conn, model, x, y)  # times only the streaming itself
                conn.close()
            rate = report["samples_per_second"]
            limit = baud / 10 / payload
            share = rate / limit
            print(f"{baud:>7} {rate:>10.2f} {limit:>16.2f} {share:>6.0%}  (goal >= 80%: {'met' if share >= 0.8 else 'MISSED'})")
        print(f"per sample: `db load N%`, {math.ceil(input_bytes / CHUNK)} `db` chunks of {CHUNK} bytes and "
              "`infer 1 0%`, sent back to back; replies are read after")


if __name__ == "__main__":
    main()
