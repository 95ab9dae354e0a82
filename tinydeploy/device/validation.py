"""Validation on the device: its outputs for real samples against the host reference."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from tinydeploy.core.errors import BadInput, StepFailed
from tinydeploy.core.names import TFLM
from tinydeploy.core.protocol import Line
from tinydeploy.device.connection import Connection, load_commands


def _results(lines: list[Line]) -> list[int]:
    found = [line.value for line in lines if line.kind == "results"]
    if not found:
        raise StepFailed("the device's reply has no m-results line")
    return found[-1]


def validate_on_device(conn: Connection, model_path: str | Path, x: np.ndarray, y: np.ndarray,
                       progress: Callable[[int, int], None] | None = None, engine: str = TFLM,
                       kernels: str | None = None, on_sample: Callable[[dict], None] | None = None) -> dict:
    """Stream samples to the device and compare its outputs with the host's: the TFLM
    interpreter for TFLM firmware, TFLite's reference kernels for the C engine (which is
    bit-exact with them).

    The result states the device's measured tolerance against that reference: how many
    outputs differ by 0, 1, 2... LSB, and the largest difference. Another kernel library
    (ESP-NN, or an older TFLM in an Arduino library) may round differently; the figure
    says by how much, and nothing is widened to hide it. on_sample gets the figures so far
    after every sample (marked partial until the last).

    A model with a front end (tinydeploy.core.model_frontend) takes raw windows: each is sent
    as int16 samples, quantised here as td_frontend_quantize() does, and the host reference
    runs on the features the Python front end makes of them (bit-exact with the device's)."""
    from tinydeploy.codegen.engines import ENGINES
    from tinydeploy.runtime.evaluate import quantize_input
    from tinydeploy.core.model import load_model
    from tinydeploy.core.model_frontend import device_frontend
    if engine not in ENGINES:
        raise StepFailed(f"the device runs an engine tinydeploy doesn't know ('{engine}'; engines: "
                         f"{', '.join(ENGINES)}), so there is no host reference to validate it against")
    model = load_model(model_path)
    front = device_frontend(model)
    x = np.asarray(x)
    want = list(front.window) if front is not None else list(model.input_tensors[0].shape[1:])
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != int(np.prod(want)) or len(y) != len(x):
        takes = (f"raw windows of {want[0]} steps x {want[1]} channels (its front end runs on the device)"
                 if front is not None else f"inputs of shape {want}")
        raise BadInput(f"samples of shape {list(x.shape[1:])} ({len(x)} samples, {len(y)} labels) don't fit "
                       f"{Path(model_path).name}: it takes {takes}, one label per sample")
    if front is None:
        inputs = quantize_input(model, x)
        sent = [sample.tobytes() for sample in inputs]
        reference = ENGINES[engine].reference_basis
    else:
        inputs = front.features(x).reshape(len(x), *model.input_tensors[0].shape[1:])
        sent = front.wire(x)
        reference = (f"{ENGINES[engine].reference_basis}, on the features of the host's front end "
                     "(int16 windows sent, the device runs its front end)")
    host = ENGINES[engine].reference(model, inputs)
    device: list[list[int]] = []
    started = time.perf_counter()

    def summary() -> dict:
        seconds = time.perf_counter() - started
        done = len(device)
        device_outputs = np.array(device, dtype=np.int32).reshape(done, -1)
        diff = np.abs(device_outputs - host[:done].astype(np.int32))
        levels, level_counts = np.unique(diff, return_counts=True)
        agree = device_outputs.argmax(1) == host[:done].argmax(1)
        return {"kernels": kernels or f"{engine} engine",
                "samples": done, "top1_agreement": round(float(agree.mean()), 5),
                "output_diff_lsb_counts": {str(int(k)): int(n) for k, n in zip(levels, level_counts)},
                "identical_output_values": round(float((diff == 0).mean()), 5),
                "identical_outputs": round(float((diff == 0).all(axis=1).mean()), 5),
                "max_output_diff_lsb": int(diff.max()),
                "device_accuracy": round(float((device_outputs.argmax(1) == y[:done]).mean()), 5),
                "host_accuracy": round(float((host[:done].argmax(1) == y[:done]).mean()), 5),
                "seconds": round(seconds, 3), "samples_per_second": round(done / seconds, 2) if seconds else None,
                "reference": reference}

    batches = [load_commands(data) + ["infer 1 0"] for data in sent]
    if batches:
        conn.send_all(batches[0])
    for i, batch in enumerate(batches):
        if i + 1 < len(batches):  # one sample in flight ahead, so the line never idles
            conn.send_all(batches[i + 1])
        device.append(_results(conn.replies(batch)[-1]))
        if on_sample and len(device) < len(batches):
            on_sample({**summary(), "partial": True, "samples_planned": len(batches)})
        if progress:
            progress(i + 1, len(batches))
    return summary()
