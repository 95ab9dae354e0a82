"""A model's front end as the device runs it: the chain from the model's metadata
(core.frontend.model_frontend), its int8 output set to the model's own input quantisation,
and the raw window the firmware receives.

On the wire (docs/protocol.md) a model with a front end takes the raw window as int16
samples, little-endian, channels interleaved (sample[step * channels + channel]), quantised
on the host with the front end's input scale exactly as td_frontend_quantize() does
(core.frontend.quantize_input). The firmware runs td_frontend_run() on them and the model on
the features; ``features`` is that, here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinydeploy.core.errors import BadInput
from tinydeploy.core.frontend import Frontend, model_frontend, quantize_input

WIRE_DTYPE = "<i2"  # int16, little-endian: how a raw window travels to the device


@dataclass(frozen=True)
class DeviceFrontend:
    """A model's front end on the device: the chain (its output = the model's input quantisation)
    and the raw window shape [steps, channels] it takes."""
    front: Frontend
    window: tuple[int, int]

    @property
    def window_bytes(self) -> int:
        """Bytes of one raw window on the wire and in the firmware's buffer (int16 samples)."""
        return 2 * self.window[0] * self.window[1]

    def samples(self, windows) -> np.ndarray:
        """Float windows [count, steps, channels] -> the int16 samples the device receives."""
        x = self._windows(windows)
        return quantize_input(x, self.front.input_scale)

    def wire(self, windows) -> list[bytes]:
        """Each window's bytes as sent to the device (db load / db)."""
        return [s.astype(WIRE_DTYPE).tobytes() for s in self.samples(windows)]

    def features(self, windows) -> np.ndarray:
        """Float windows [count, steps, channels] -> the model's int8 inputs, [count, features]
        (what td_frontend_run() writes into the model's input on the device)."""
        x = self._windows(windows)
        return self.front.quantized(x).reshape(len(x), -1)

    def features_of_samples(self, samples) -> np.ndarray:
        """int16 samples [count, steps, channels] (as received) -> the model's int8 inputs.
        Each sample times the input scale quantises back to itself: float32(s * scale) *
        float32(1 / scale) is within 2**-21 * |s| < 0.02 of s, which rounds to s."""
        s = np.asarray(samples, np.int16).reshape(-1, *self.window)
        return self.features(s.astype(np.float64) * self.front.input_scale)

    def _windows(self, windows) -> np.ndarray:
        x = np.asarray(windows)
        if x.shape == self.window:
            x = x[None]
        if x.ndim >= 2 and int(np.prod(x.shape[1:])) == self.window[0] * self.window[1]:
            x = x.reshape(len(x), *self.window)  # e.g. [count, steps, channels, 1] as data files give them
        else:
            raise BadInput(f"the model's front end takes windows of [steps, channels] = {list(self.window)}, "
                           f"not samples shaped {list(np.shape(windows))[1:] or list(np.shape(windows))}")
        return x


def device_frontend(model) -> DeviceFrontend | None:
    """The front end a model's firmware runs, or None when the model takes its input as it is.

    Args:
        model: a tinydeploy.core.model.Model.
    Raises:
        BadInput: the metadata's front end is unreadable, the model's input is not int8, or
            the front end's features do not fill the model's input exactly.
    """
    found = model_frontend(model.meta)
    if found is None:
        return None
    front, window = found
    tensor = model.input_tensors[0]
    if tensor.dtype != "INT8" or tensor.quantization is None:
        raise BadInput(f"{model.path}: a front end feeds an int8 model input; this input is {tensor.dtype.lower()}")
    size = int(np.prod(front.output_shape(window)))
    if size != tensor.elements:
        raise BadInput(f"{model.path}: the front end makes {size} features from a {window[0]} x {window[1]} window "
                       f"but the model's input takes {tensor.elements} ({list(tensor.shape)})")
    scale, zero_point = tensor.quantization.scales[0], tensor.quantization.zero_points[0]
    return DeviceFrontend(front.with_output(float(scale), int(zero_point)), window)
