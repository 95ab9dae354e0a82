"""The core install against the full one: disk size, and the CLI's import time.

    .venv/bin/python bench/install_size.py [--full]

Builds tinydeploy's wheel, installs it into a new venv (its dependencies from the package
index) and measures the venv's size on disk and how long `import tinydeploy.cli` takes (best
of 5 fresh interpreters). With --full, the same with the [optimize] extra. Goal (issue 16): a
test runner's install without the training stack (the full one measured 2.5 GB).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def import_seconds(python: Path) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([python, "-c", "import tinydeploy.cli"], check=True)
        best = min(best, time.perf_counter() - started)
    return best


def measure(wheel: Path, extra: str, work: Path) -> None:
    env = work / (extra or "core")
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    started = time.perf_counter()
    subprocess.run([python, "-m", "pip", "install", "-q", f"{wheel}[{extra}]" if extra else str(wheel)], check=True)
    seconds = time.perf_counter() - started
    print(f"{'tinydeploy[' + extra + ']' if extra else 'tinydeploy (core)':24} {size_mb(env):8,.0f} MB on disk, "
          f"installed in {seconds:.0f} s; `import tinydeploy.cli` {import_seconds(python) * 1000:.0f} ms "
          "(a fresh interpreter, best of 5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="also measure the install with the [optimize] extra")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(work / "dist"), str(ROOT)], check=True, capture_output=True)
        wheel = next((work / "dist").glob("tinydeploy-*.whl"))
        measure(wheel, "", work)
        if args.full:
            measure(wheel, "optimize", work)


if __name__ == "__main__":
    main()
