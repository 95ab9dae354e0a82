"""`tinydeploy build`: compile a rendered project with PlatformIO.

The full PlatformIO output is saved in DIR/build.log; failures are turned into
one clear message each (PlatformIO missing, offline, a compile error).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tinydeploy.errors import BadInput, StepFailed

_OFFLINE = re.compile(r"HTTPClientError|Could not resolve|ConnectionError|Max retries exceeded|"
                      r"Failed to establish|Name or service not known|Temporary failure in name resolution|"
                      r"InternetIsOffline|timed out", re.IGNORECASE)
_COMPILE_ERROR = re.compile(r"(^|\s)(fatal )?error:|: undefined reference to", re.IGNORECASE)


def pio_command() -> list[str]:
    """How to run PlatformIO: the installed package, else a `pio` on PATH.

    Raises:
        StepFailed: PlatformIO is not installed.
    """
    if importlib.util.find_spec("platformio") is not None:
        return [sys.executable, "-m", "platformio"]
    found = shutil.which("pio") or shutil.which("platformio")
    if found:
        return [found]
    raise StepFailed("PlatformIO is not installed: `pip install platformio` (tinydeploy's own install includes it)")


def run_logged(command: list[str], log_path: Path, on_line: Callable[[str], None] | None = None,
               cwd: Path | None = None, env: dict | None = None) -> tuple[int, list[str]]:
    """Run a command, saving its output to log_path and passing each line to on_line."""
    lines: list[str] = []
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   errors="replace", cwd=cwd, env=env)
    except FileNotFoundError as exc:
        raise StepFailed(f"cannot run {command[0]}: not found") from exc
    with open(log_path, "w", encoding="utf-8") as log:
        for line in process.stdout:
            log.write(line)
            log.flush()
            lines.append(line.rstrip("\n"))
            if on_line:
                on_line(lines[-1])
    return process.wait(), lines


def explain_build_failure(lines: list[str], code: int, log_path: Path) -> str:
    """One message for a failed `pio run`, by what its output shows."""
    text = "\n".join(lines)
    if _OFFLINE.search(text) and re.search(r"Install|Manager|download|registry", text, re.IGNORECASE):
        return ("PlatformIO could not download the ESP32 platform or toolchain: this machine seems to be "
                "offline. On a connected machine run `pio pkg install -g --platform espressif32` and build "
                f"once so the toolchain is fetched, then copy ~/.platformio here. Full log: {log_path}")
    errors = [line.strip() for line in lines if _COMPILE_ERROR.search(line)]
    if errors:
        return f"compile error: {' | '.join(errors[:5])}. Full log: {log_path}"
    tail = [line.strip() for line in lines if line.strip()][-3:]
    return f"pio run failed (exit {code}): {' | '.join(tail)}. Full log: {log_path}"


@dataclass
class BuildResult:
    log: Path
    firmware: list[Path]


def build(project_dir: str | Path, env: str | None = None,
          on_line: Callable[[str], None] | None = None, process_env: dict | None = None) -> BuildResult:
    """Build a PlatformIO project (`pio run`).

    Args:
        project_dir: the rendered project.
        env: the PlatformIO environment (default: all in platformio.ini).
        on_line: receives each output line (for a progress display).
        process_env: environment for PlatformIO (default: this process's).

    Returns:
        The log path and the firmware images built.

    Raises:
        BadInput: not a PlatformIO project.
        StepFailed: PlatformIO is missing, offline, or the build failed.
    """
    root = Path(project_dir)
    if not (root / "platformio.ini").is_file():
        raise BadInput(f"{root} is not a PlatformIO project (no platformio.ini); run `tinydeploy render` first")
    command = pio_command() + ["run", "-d", str(root)] + (["-e", env] if env else [])
    log = root / "build.log"
    code, lines = run_logged(command, log, on_line, env=process_env)
    if code != 0:
        raise StepFailed(explain_build_failure(lines, code, log))
    return BuildResult(log, sorted((root / ".pio" / "build").glob("*/firmware.bin")))
