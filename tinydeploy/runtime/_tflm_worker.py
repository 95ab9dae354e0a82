"""Child process running the TFLM interpreter: `python -m tinydeploy.runtime._tflm_worker MODEL`.

TFLM's Python package aborts or crashes the whole process in some cases (an
allocator underflow for some too-small arenas; some models when TensorFlow is
loaded in the same process), so tinydeploy runs every interpreter here, where a
crash ends only this child. One request a line on stdin, one answer a line:

    probe N   -> ok | fail        (does an N-byte arena work?)
    open N    -> ok | fail        (keep an interpreter with an N-byte arena)
    report    -> {JSON}           (recording allocator's report, after one invoke on zeros)
    run HEX   -> HEX              (int8 input bytes -> int8 output bytes)
    time R N DIR -> [µs, ...]     (DIR/0.tflite, 1.tflite, ...: each one's median invoke over R
                                   runs on zeros, with an N-byte arena or the least doubling
                                   that fits; the interpreters are kept for the next call)
"""

import json
import os
import statistics
import sys
import tempfile
import time


def zeroed_interpreter(runtime, np, data: bytes, arena: int):
    """An interpreter for data with an arena of `arena` bytes or the least doubling that fits,
    every input set to zeros."""
    while True:
        try:
            interpreter = runtime.Interpreter.from_bytes(data, arena_size=arena)
            break
        except RuntimeError:
            if arena > 1 << 28:
                raise
            arena *= 2
    index = 0
    while True:
        try:
            details = interpreter.get_input_details(index)
        except (RuntimeError, IndexError, ValueError):
            return interpreter
        interpreter.set_input(np.zeros(details["shape"], dtype=details["dtype"]), index)
        index += 1


def median_invoke_us(interpreter, repeats: int) -> float:
    interpreter.invoke()  # a first run outside the timing, as on the board (warm-up)
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        interpreter.invoke()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


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
    timed = {}  # folder -> its models' interpreters (time)
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
            elif verb == "time":
                repeats, size, folder = arg.split(" ", 2)
                if folder not in timed:
                    count = len([name for name in os.listdir(folder) if name.endswith(".tflite")])
                    timed[folder] = []
                    for index in range(count):
                        with open(os.path.join(folder, f"{index}.tflite"), "rb") as handle:
                            timed[folder].append(zeroed_interpreter(runtime, np, handle.read(), int(size)))
                answers.write(json.dumps([median_invoke_us(one, int(repeats)) for one in timed[folder]]) + "\n")
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
