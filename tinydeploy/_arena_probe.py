"""Child process for arena probing: `python -m tinydeploy._arena_probe MODEL`.

Reads arena sizes from stdin, one per line, and answers "ok" or "fail" for
each. TFLM's allocator can crash the process outright for some too-small
arenas, so tinydeploy.tflm probes here, where a crash only ends this child.
"""

import os
import sys


def main() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # TFLM's own log lines go to fd 1; keep them off the answer channel
    os.dup2(quiet, 2)
    from tflite_micro.python.tflite_micro import runtime
    with open(sys.argv[1], "rb") as handle:
        model = handle.read()
    for line in sys.stdin:
        try:
            runtime.Interpreter.from_bytes(model, arena_size=int(line))
            answers.write("ok\n")
        except RuntimeError:
            answers.write("fail\n")


if __name__ == "__main__":
    main()
