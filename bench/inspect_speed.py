"""Wall time of `tinydeploy inspect` on a ~20 KB int8 model.

Goal (issue: foundation): under 2 s beyond TensorFlow's import time. inspect
does not import TensorFlow at all (the flatbuffer is read with the schema
bindings shipped by tflite-micro), so the figure printed is the whole command.
Run: .venv/bin/python bench/inspect_speed.py
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tinydeploy.runtime import _tf
from tinydeploy.optimize.convert import to_int8_tflite


def twenty_kb_model() -> bytes:
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential([
        layers.Input((32, 32, 1)),
        layers.Conv2D(16, 3, strides=2, activation="relu"),
        layers.DepthwiseConv2D(3, activation="relu"),
        layers.Conv2D(32, 1, activation="relu"),
        layers.Conv2D(38, 3, strides=2, activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(48, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    return to_int8_tflite(model, np.random.default_rng(0).random((16, 32, 32, 1), dtype=np.float32))


def timed(args) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(twenty_kb_model())
        tf_import = min(timed([sys.executable, "-c", "import os; os.environ['TF_USE_LEGACY_KERAS']='1'; "
                               "import tensorflow"]) for _ in range(3))
        runs = [timed([sys.executable, "-m", "tinydeploy", "inspect", str(path), "--json",
                       "--max-latency-ms", "1000", "--max-model-kb", "1000"]) for _ in range(5)]
        print(f"model: {path.stat().st_size:,} bytes")
        print(f"TensorFlow import alone: {tf_import:.2f} s (inspect does not import it)")
        print(f"inspect wall time: best {min(runs):.2f} s, median {sorted(runs)[2]:.2f} s over 5 runs")
        print(f"goal: < 2 s beyond TensorFlow's import -> {'met' if min(runs) < 2 else 'MISSED'}")


if __name__ == "__main__":
    main()
