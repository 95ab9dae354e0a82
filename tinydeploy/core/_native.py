"""Capturing what native (C/C++) code prints, which Python's sys.stdout never sees."""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from contextlib import contextmanager


@contextmanager
def captured_native_output():
    """Capture what C/C++ code writes to file descriptors 1 and 2.

    Yields a list that receives the captured text when the block ends. TFLM
    logs with printf, which Python's sys.stdout never sees.
    """
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    result: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            for fd in (1, 2):
                os.dup2(sink.fileno(), fd)
            yield result
        finally:
            libc.fflush(None)
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            result.append(sink.read().decode("utf-8", "replace"))
