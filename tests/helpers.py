"""What several test files share: running the CLI, and the rule for missing tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
