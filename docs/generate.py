"""`make docs`: the documentation's generated parts, from the real tinydeploy.

- Synopses (`<!-- tinydeploy:synopsis CMD -->`) and the README's command table come from the
  CLI's own parser; tests/test_docs.py fails when a committed one differs from it.
- Outputs (`<!-- tinydeploy:output NAME -->`) are the real output of the commands below, run
  in order on the built-in digits data in build/docs/ (a few minutes; without `--synopses-only`).

Usage: python docs/generate.py [--synopses-only]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
WORK = "build/docs"
MODEL = f"{WORK}/optimize/model.tflite"
DATA = ["--data", "digits", "--image-size", "16"]
BLOCK = re.compile(r"(<!-- tinydeploy:(?P<kind>[\w-]+) ?(?P<name>[\w-]*) -->\n)(?P<body>.*?)"
                   r"(<!-- /tinydeploy:(?P=kind) ?(?P=name) -->)", re.S)


def commands() -> dict[str, argparse.ArgumentParser]:
    from tinydeploy.cli import build_parser
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def synopsis(name: str) -> str:
    """A command's usage as argparse prints it, 100 columns wide whatever the terminal."""
    import functools
    command = commands()[name]
    command.formatter_class = functools.partial(argparse.HelpFormatter, width=100)
    first, *rest = command.format_usage().strip().splitlines()
    lines = [first.removeprefix("usage: "), *(line[len("usage: "):] for line in rest)]
    return "```\n" + "\n".join(lines) + "\n```\n"


def command_table() -> str:
    from tinydeploy.cli import COMMANDS
    rows = [f"| `tinydeploy {name}` | {summary} |" for name, summary, _, _ in COMMANDS]
    return "| command | what it does |\n|---|---|\n" + "\n".join(rows) + "\n"


def generated(kind: str, name: str, outputs: dict[str, str] | None) -> str | None:
    """A block's new text, or None to keep it (outputs not regenerated this time)."""
    if kind == "synopsis":
        return synopsis(name)
    if kind == "command-table":
        return command_table()
    if kind == "output":
        if outputs is None:
            return None
        if name not in outputs:
            raise SystemExit(f"docs name an output '{name}' that docs/generate.py does not produce")
        return outputs[name]
    raise SystemExit(f"unknown generated block kind '{kind}'")


def rewrite(outputs: dict[str, str] | None) -> list[Path]:
    changed = []
    for path in DOCS:
        text = path.read_text()
        new = BLOCK.sub(lambda m: m.group(1) + (generated(m["kind"], m["name"], outputs) or m["body"]) + m.group(5),
                        text)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


# ---- outputs -------------------------------------------------------------

def run(*args: str, shown: str | None = None, ok=(0,)) -> str:
    """Run `tinydeploy ARGS` from the repository root; its output as a shell transcript."""
    done = subprocess.run([sys.executable, "-m", "tinydeploy", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "120"}, timeout=1800)
    if done.returncode not in ok:
        raise SystemExit(f"tinydeploy {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    command = shown or "tinydeploy " + " ".join(args)
    body = (done.stdout + done.stderr).rstrip()
    return f"```\n$ {command}\n{body}\n```\n" + ("" if done.returncode == 0 else f"(exit {done.returncode})\n")


@contextmanager
def background(*args: str, port_file: Path):
    """A tinydeploy command that serves a port (emulate, virtual-device), stopped at the end."""
    port_file.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, "-m", "tinydeploy", *args, "--port-file", str(port_file)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if process.poll() is not None or time.time() > deadline:
                raise SystemExit(f"tinydeploy {' '.join(args)} did not start")
            time.sleep(0.2)
        yield port_file.read_text().strip()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@contextmanager
def mock_bootloader():
    """esp32-mock-bootloader (a test dependency): an ESP32 ROM bootloader on a loopback port."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "esp32-mock-bootloader"), "run", "--chip", "esp32",
                               "--port", str(port), "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        yield f"socket://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def info_line(board_source: Path) -> str:
    """The `info%` line a rendered firmware answers, with N for the arena only the board knows."""
    import json
    literal = re.search(r"kInfoFormat\[\] = (\".*\");", board_source.read_text()).group(1)
    return "```\nm-info-" + json.loads(literal) % ("N", "null") + "\n```\n"


def outputs() -> dict[str, str]:
    shutil.rmtree(ROOT / WORK, ignore_errors=True)
    (ROOT / WORK).mkdir(parents=True)
    out = {"version": run("--version"), "boards": run("boards")}
    out["optimize"] = run("optimize", *DATA, "--budget", "fast", "--out", f"{WORK}/optimize")
    out["inspect"] = run("inspect", MODEL, "--board", "esp32-s3-devkitc-1")
    out["evaluate"] = run("evaluate", MODEL, *DATA)
    out["render"] = run("render", MODEL, "--board", "esp32-c3-devkitm-1", "--out", f"{WORK}/c3", "--labels",
                        f"{WORK}/optimize/report.json")
    out["protocol-info"] = info_line(ROOT / WORK / "c3" / "src" / "td_board.c")
    out["render-rv32"] = run("render", MODEL, "--board", "qemu-riscv32", "--out", f"{WORK}/rv32")
    out["build-rv32"] = run("build", f"{WORK}/rv32", "--quiet")
    with background("emulate", f"{WORK}/rv32", port_file=ROOT / WORK / "rv32-port.txt") as port:
        out["bench-rv32"] = run("bench", "--port", port, "--expect-model", MODEL, "--validate", "100", *DATA,
                                "--profile", "--out", f"{WORK}/rv32-bench",
                                shown="tinydeploy bench --port $(cat build/docs/rv32-port.txt) --expect-model "
                                + MODEL + " --validate 100 " + " ".join(DATA) + f" --profile --out {WORK}/rv32-bench")
    out["calibrate"] = run("calibrate", f"{WORK}/rv32-bench", "--board", "qemu-riscv32", "--out", f"{WORK}/boards")
    with background("virtual-device", MODEL, port_file=ROOT / WORK / "virtual-port.txt") as port:
        out["bench"] = run("bench", "--port", port, "--expect-model", MODEL, "--validate", "100", *DATA,
                           "--out", f"{WORK}/bench", shown="tinydeploy bench --port $(cat build/docs/"
                           "virtual-port.txt) --expect-model " + MODEL + " --validate 100 " + " ".join(DATA)
                           + f" --out {WORK}/bench")
    out["verify"] = run("verify", f"{WORK}/bench", "--max-latency-ms", "0.5", ok=(0, 1))
    (ROOT / WORK / "app.bin").write_bytes(b"\xe9" + bytes(range(256)) * 32)  # an ESP image's magic, then anything
    with mock_bootloader() as port:
        out["flash-firmware"] = run("flash", "--firmware", f"{WORK}/app.bin", "--board", "esp32dev", "--port", port,
                                    "--quiet")
    out["search"] = run("search", *DATA, "--trials", "3", "--out", f"{WORK}/search", "--quiet")
    out["deploy"] = run("deploy", *DATA, "--budget", "fast", "--board", "esp32-s3-devkitc-1", "--out",
                        f"{WORK}/deploy")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synopses-only", action="store_true", help="only the parts taken from the CLI's parser")
    args = parser.parse_args()
    changed = rewrite(None if args.synopses_only else outputs())
    print("updated: " + (", ".join(str(p.relative_to(ROOT)) for p in changed) or "nothing"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
