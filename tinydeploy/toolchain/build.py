"""`tinydeploy build`: compile a rendered project.

A PlatformIO project (platformio.ini) is built with `pio run`; a project for a
board with its own cross toolchain (a rendered Makefile, e.g. qemu-riscv32) with
`make`. The full output is saved in DIR/build.log; failures are turned into one
clear message each (PlatformIO or the cross compiler missing, offline, a
compile error).
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

from tinydeploy.core.errors import BadInput, StepFailed

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


def explain_build_failure(lines: list[str], code: int, log_path: Path, tool: str = "pio run",
                          packages: str | None = None) -> str:
    """One message for a failed build (`pio run`, or `make` with the board's cross compiler
    from the Debian packages named), by what its output shows."""
    text = "\n".join(lines)
    if packages is None and _OFFLINE.search(text) and re.search(r"Install|Manager|download|registry", text,
                                                                re.IGNORECASE):
        return ("PlatformIO could not download the ESP32 platform or toolchain: this machine seems to be "
                "offline. On a connected machine run `pio pkg install -g --platform espressif32` and build "
                f"once so the toolchain is fetched, then copy ~/.platformio here. Full log: {log_path}")
    errors = [line.strip() for line in lines if _COMPILE_ERROR.search(line)]
    if errors:
        return f"compile error: {' | '.join(errors[:5])}. Full log: {log_path}"
    missing = [line.strip() for line in lines if "cannot find" in line or "No such file" in line]
    if packages and missing:
        return f"{' | '.join(missing[:3])}: is {packages} installed? Full log: {log_path}"
    tail = [line.strip() for line in lines if line.strip()][-3:]
    return f"{tool} failed (exit {code}): {' | '.join(tail)}. Full log: {log_path}"


@dataclass
class BuildResult:
    log: Path
    firmware: list[Path]
    size: dict | None = None  # section sizes of a cross-compiled ELF (text, data, bss)


def elf_size(size_tool: str, elf: Path) -> dict:
    """Berkeley sizes from binutils' size: text (code + read-only data), data, bss."""
    done = subprocess.run([size_tool, str(elf)], capture_output=True, text=True)
    if done.returncode != 0:
        raise StepFailed(f"{size_tool} {elf} failed: {done.stderr.strip()}")
    text, data, bss = (int(v) for v in done.stdout.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "tool": size_tool}


def build_make(root: Path, toolchain: dict, on_line: Callable[[str], None] | None = None) -> BuildResult:
    """Build a rendered Makefile project with its board's cross compiler.

    Raises:
        StepFailed: make or the compiler is missing (naming the Debian packages), or the build failed.
    """
    packages = " ".join(toolchain.get("packages", []))
    cc = toolchain.get("cc")
    if not shutil.which("make"):
        raise StepFailed("make is not installed (apt-get install make)")
    if cc and not shutil.which(cc):
        raise StepFailed(f"the cross compiler {cc} is not installed: apt-get install {packages}")
    log = root / "build.log"
    code, lines = run_logged(["make", "-C", str(root)], log, on_line)
    if code != 0:
        raise StepFailed(explain_build_failure(lines, code, log, tool="make", packages=packages))
    elf = root / "build" / "firmware.elf"
    size = elf_size(toolchain["size"], elf) if toolchain.get("size") and elf.exists() else None
    return BuildResult(log, [elf] if elf.exists() else [], size)


def build(project_dir: str | Path, env: str | None = None,
          on_line: Callable[[str], None] | None = None, process_env: dict | None = None) -> BuildResult:
    """Build a rendered project: `pio run`, or `make` for a cross-toolchain board.

    Args:
        project_dir: the rendered project.
        env: the PlatformIO environment (default: all in platformio.ini).
        on_line: receives each output line (for a progress display).
        process_env: environment for PlatformIO (default: this process's).

    Returns:
        The log path and the firmware images built.

    Raises:
        BadInput: not a rendered project.
        StepFailed: PlatformIO is missing, offline, or the build failed.
    """
    from tinydeploy.core.manifest import rendered_board
    root = Path(project_dir)
    board = rendered_board(root)
    if board is not None and board.toolchain is not None:
        return build_make(root, board.toolchain, on_line)
    if not (root / "platformio.ini").is_file():
        raise BadInput(f"{root} is not a rendered project (no platformio.ini or Makefile); "
                       "run `tinydeploy render` first")
    command = pio_command() + ["run", "-d", str(root)] + (["-e", env] if env else [])
    log = root / "build.log"
    code, lines = run_logged(command, log, on_line, env=process_env)
    if code != 0:
        raise StepFailed(explain_build_failure(lines, code, log))
    return BuildResult(log, sorted((root / ".pio" / "build").glob("*/firmware.bin")))
