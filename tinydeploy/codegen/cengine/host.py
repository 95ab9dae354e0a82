"""The generated C compiled with the host compiler and loaded with ctypes, so that tests and
benchmarks run the very code the board runs. This part writes and compiles files."""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np

from tinydeploy.codegen.cengine.lowering import Lowered
from tinydeploy.codegen.cengine.source import render_sources


class HostModel:
    """The generated C compiled with the host compiler into a shared library, with predict()."""

    def __init__(self, lowered: Lowered, workdir, compiler: str = "gcc",
                 flags: tuple[str, ...] = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror")):
        folder = Path(workdir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in render_sources(lowered, "host build").items():
            (folder / name).write_text(text)
        library = folder / "td_model.so"
        command = [compiler, *flags, "-shared", "-fPIC", "-o", str(library),
                   str(folder / "td_model.c"), str(folder / "td_kernels.c")]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
        self._lib = ctypes.CDLL(str(library))
        self._lib.td_model_invoke.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        model = lowered.model
        self.input_shape = model.tensors[lowered.input].shape
        self.output_shape = model.tensors[lowered.output].shape
        self.input_bytes = model.tensors[lowered.input].nbytes
        self.output_bytes = model.tensors[lowered.output].nbytes

    def invoke(self, sample: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(sample, dtype=np.int8).reshape(-1)
        if x.size != self.input_bytes:
            raise ValueError(f"expected {self.input_bytes} input values, got {x.size}")
        y = np.zeros(self.output_bytes, dtype=np.int8)
        self._lib.td_model_invoke(x.ctypes.data, y.ctypes.data)
        return y

    def predict(self, x_int8: np.ndarray) -> np.ndarray:
        """A batch of int8 inputs -> int8 outputs, shaped like the model's output per sample."""
        return np.stack([self.invoke(s).reshape(self.output_shape[1:]) for s in x_int8])
