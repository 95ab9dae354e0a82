"""What several test files share: running the CLI, the rule for missing tools, and a mock
ESP32 ROM bootloader for esptool."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest


class CliRun(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args, timeout: float = 600, **kwargs) -> CliRun:
    """`python -m tinydeploy ARGS` in a fresh process, as a user runs it."""
    done = subprocess.run([sys.executable, "-m", "tinydeploy", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    return CliRun(done.returncode, done.stdout, done.stderr)


def missing(reason: str) -> None:
    """A tool or service a test needs is absent: skip, saying why, on a developer's machine; fail
    under CI=true, where .ci/run installs and starts everything the suite needs."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run should have provided it)", pytrace=False)
    pytest.skip(reason)


def need_programs(*names: str, packages: str = "") -> None:
    """Skip or fail (see missing) unless every program is on PATH."""
    absent = [name for name in names if shutil.which(name) is None]
    if absent:
        missing(f"needs {', '.join(absent)}" + (f" (Debian: apt-get install {packages})" if packages else ""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mock_esp32_bootloader(chip: str = "esp32s3"):
    """esp32-mock-bootloader (a test dependency): a mock ESP32 ROM bootloader on a loopback TCP
    port that esptool talks to; yields its socket:// URL."""
    port = free_port()
    command = str(Path(sys.executable).parent / "esp32-mock-bootloader")
    server = subprocess.Popen([command, "run", "--chip", chip, "--port", str(port), "--bind", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    pytest.fail("esp32-mock-bootloader did not start")
                time.sleep(0.2)
        yield f"socket://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
