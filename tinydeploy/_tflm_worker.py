"""Child process running the TFLM interpreter: `python -m tinydeploy._tflm_worker MODEL`.

TFLM's Python package aborts or crashes the whole process in some cases (an
allocator underflow for some too-small arenas; some models when TensorFlow is
loaded in the same process), so tinydeploy runs every interpreter here, where a
crash ends only this child. One request a line on stdin, one answer a line:

    probe N   -> ok | fail        (does an N-byte arena work?)
    open N    -> ok | fail        (keep an interpreter with an N-byte arena)
    report    -> {JSON}           (recording allocator's report, after one invoke on zeros)
    run HEX   -> HEX              (int8 input bytes -> int8 output bytes)
"""

import json
import os
import sys
import tempfile


def main() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # TFLM's own log lines go to fd 1; keep them off the answer channel
    os.dup2(quiet, 2)
    import ctypes

    import numpy as np
    from tflite_micro.python.tflite_micro import runtime
    with open(sys.argv[1], "rb") as handle:
        model = handle.read()
    interpreter = None
    libc = ctypes.CDLL(None)
    for line in sys.stdin:
        verb, _, arg = line.strip().partition(" ")
        try:
            if verb == "probe":
                runtime.Interpreter.from_bytes(model, arena_size=int(arg))
                answers.write("ok\n")
            elif verb == "open":
                interpreter = runtime.Interpreter.from_bytes(model, arena_size=int(arg))
                details = interpreter.get_input_details(0)
                answers.write("ok\n")
            elif verb == "report":
                interpreter.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
                interpreter.invoke()
                with tempfile.TemporaryFile() as sink:
                    os.dup2(sink.fileno(), 1)
                    os.dup2(sink.fileno(), 2)
                    interpreter.print_allocations()
                    libc.fflush(None)
                    os.dup2(quiet, 1)
                    os.dup2(quiet, 2)
                    sink.seek(0)
                    answers.write(json.dumps(sink.read().decode("utf-8", "replace")) + "\n")
            elif verb == "run":
                sample = np.frombuffer(bytes.fromhex(arg), dtype=np.int8).reshape(details["shape"])
                interpreter.set_input(sample, 0)
                interpreter.invoke()
                answers.write(np.asarray(interpreter.get_output(0)).astype(np.int8).tobytes().hex() + "\n")
            else:
                answers.write("fail\n")
        except RuntimeError:
            answers.write("fail\n")


if __name__ == "__main__":
    main()
