"""A hostile user against the CLI: every command with long paths, damaged models and data, bad
port URLs, files of the user's own in --out, a second run on a busy --out, forged results, and
boards that fail under `verify --junit`, hostile board profiles (every value class: clocks, cycle
counts, line rates, memory sizes, power figures, and strings that would inject into platformio.ini,
a Makefile or a command line), usage conflicts under --junit, each run as `python -m tinydeploy ... --json` in a
temporary folder, as a user runs it.

Per command it counts the hostile inputs, the clean refusals (exit 2 bad input, exit 1 a failed
step), the internal errors (a traceback, an exit code other than 0/1/2, stdout that is not one
JSON document, or a hang), the exits that were not the expected ones, the user files whose bytes
changed, and the --junit files that were asked for and not written. Goal: 0 internal errors,
0 overwritten user files, 0 missing JUnit files (the exit code says whether it was met).
No command trains: each refusal comes before any training (`--budget fast --image-size 8
--stages arch` bound the time if one did not).

Run: PYTHONPATH=. .venv/bin/python bench/probe_cli.py [--workers 2] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LONG = "n" * 300  # one name over NAME_MAX (255 bytes on Linux)
TIMEOUT = 300  # seconds a probe may take before it counts as a hang
ROOT = Path(__file__).resolve().parents[1]
FAST = ["--budget", "fast", "--image-size", "8", "--stages", "arch"]  # bounds a run that gets as far as training


@dataclass
class Probe:
    command: str  # the table's row
    kind: str  # long path, damaged model, damaged data, bad URL, user file, concurrent run, forged results...
    argv: list[str]
    expect: int  # the exit code of a clean refusal
    planted: dict[str, bytes] = field(default_factory=dict)  # user files (path: bytes) that must not change
    junit: str | None = None  # --junit file that must exist afterwards
    locked_out: str | None = None  # a folder another run holds during the probe; nothing may appear in it


@dataclass
class Outcome:
    probe: Probe
    code: int | None
    internal: str = ""  # why it counts as an internal error
    overwritten: list[str] = field(default_factory=list)
    junit_missing: bool = False
    last_line: str = ""


# -- what the probes need -------------------------------------------------------------------------
def tiny_model() -> bytes:
    """An int8 model on 8x8x1 images (the digits at --image-size 8), made with TensorFlow here."""
    from tinydeploy.optimize.convert import to_int8_tflite
    from tinydeploy.runtime import _tf
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(4, 3, activation="relu"),
                              layers.GlobalAveragePooling2D(), layers.Dense(10, activation="softmax")])
    return to_int8_tflite(model, np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32))


def refused_port() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"socket://127.0.0.1:{s.getsockname()[1]}"


class SilentBoard:
    """A TCP port that accepts connections and never answers (a board that hangs)."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.url = f"socket://127.0.0.1:{self.server.getsockname()[1]}"
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.server.accept()[0])
            except OSError:
                return

    def close(self):
        self.server.close()
        for conn in self.held:
            conn.close()


def results(**changes) -> dict:
    """A results.json as bench writes it (schema version 1), with fields changed."""
    layers = [{"op": "CONV_2D", "ticks": 100 * n, "work": 1000 * n, "macs": 1000 * n, "outputs": 10} for n in (1, 2, 3)]
    return {"schema_version": 1, "port": "socket://127.0.0.1:9", "virtual": False,
            "device": {"board": "esp32dev", "engine": "tflm", "timer": "us", "cpu_mhz": 240},
            "model_sha256": "ab" * 32, "model_bytes": 16000, "arena_bytes": 4096, "arena_used_bytes": 3000,
            "latency_us": {"runs": 5, "median": 500, "min": 480, "max": 520}, "validation": None,
            "profile": {"timer": "us", "layers": layers}, "complete": True, "error": None, **changes}


FORGED = {  # name: the text of a forged results.json
    "complete-yes": json.dumps(results(complete="yes")),
    "negative-latency": json.dumps(results(latency_us={"runs": 5, "median": -500})),
    "negative-arena": json.dumps(results(arena_used_bytes=-3000)),
    "agreement-over-1": json.dumps(results(validation={"samples": 10, "top1_agreement": 7})),
    "nan-latency": json.dumps(results(latency_us={"runs": 5, "median": float("nan")})),
    "no-device": json.dumps({k: v for k, v in results().items() if k != "device"}),
    "future-version": json.dumps(results(schema_version=99)),
    "layer-ticks-text": json.dumps(results(profile={"layers": [{"op": "ADD", "ticks": "fast", "work": 1}]})),
    "a-list": "[1, 2, 3]",
    "not-json": "results: fine\n",
    "empty": "",
}


# name: (base profile, [(old line, new line)]): each a user's profile wrong in one way
PROFILE_BASES = {"pio": "esp32dev", "make": "qemu-riscv32"}
HOSTILE_PROFILES = {
    "clock-zero": ("pio", [("cpu_mhz = 240", "cpu_mhz = 0")]),
    "clock-negative": ("pio", [("cpu_mhz = 240", "cpu_mhz = -240")]),
    "clock-absurd": ("pio", [("cpu_mhz = 240", "cpu_mhz = 1000000000")]),
    "clock-fraction": ("pio", [("cpu_mhz = 240", "cpu_mhz = 240.5")]),
    "cycles-nan": ("pio", [("FULLY_CONNECTED = 12.74", "FULLY_CONNECTED = nan")]),
    "cycles-negative": ("pio", [("FULLY_CONNECTED = 12.74", "FULLY_CONNECTED = -12.74")]),
    "cycles-inf": ("pio", [("FULLY_CONNECTED = 12.74", "FULLY_CONNECTED = inf")]),
    "cycles-per-op-negative": ("make", [("SOFTMAX = 251.0", "SOFTMAX = -251.0")]),
    "baud-zero": ("pio", [("baud = 115200", "baud = 0")]),
    "baud-absurd": ("pio", [("baud = 115200", "baud = 1000000000000")]),
    "fast-baud-negative": ("pio", [("fast_baud = 921600", "fast_baud = -921600")]),
    "sram-negative": ("pio", [("sram_kb = 520", "sram_kb = -520")]),
    "arena-budget-absurd": ("pio", [("arena_budget_kb = 128", "arena_budget_kb = 1000000000000")]),
    "power-negative": ("pio", [("active_ma = ", "active_ma = -1 #")]),
    "power-nan": ("pio", [("supply_v = ", "supply_v = nan #")]),
    "power-inf": ("pio", [("deep_wake_ms = ", "deep_wake_ms = inf #")]),
    "newline-in-pio-board": ("pio", [('board = "esp32dev"', 'board = "esp32dev\\n[env:evil]\\nextra_scripts = evil.py"')]),
    "semicolon-in-platform": ("pio", [('platform = "espressif32"', 'platform = "espressif32 ; evil"')]),
    "bracket-in-platform": ("pio", [('platform = "espressif32"', 'platform = "[espressif32]"')]),
    "interpolation-in-platform": ("pio", [('platform = "espressif32"', 'platform = "${sysenv.HOME}"')]),
    "newline-in-chip": ("pio", [('chip = "ESP32"', 'chip = "ESP32\\n[env:evil]"')]),
    "control-in-description": ("pio", [('description = "', 'description = "\\u0007')]),
    "shell-in-cflags": ("make", [('"-O2"', '"$(shell touch pwned)"')]),
    "newline-in-cc": ("make", [('cc = "riscv64-unknown-elf-gcc"', 'cc = "gcc\\nall:\\n\\ttouch pwned"')]),
    "backslash-in-packages": ("make", [('packages = ["gcc-riscv64-unknown-elf", ', 'packages = ["gcc\\\\", ')]),
    "traversal-in-linker-script": ("make", [('linker_script = "qemu_virt.ld"', 'linker_script = "../../etc/passwd"')]),
    "nul-in-emulator": ("make", [('command = ["qemu-system-riscv32"', 'command = ["qemu\\u0000"')]),
}


def hostile_profile(name: str) -> str:
    """The text of hostile profile `name` (its board is named hostile-NAME)."""
    from tinydeploy.core.resources import shipped
    base, changes = HOSTILE_PROFILES[name]
    text = (Path(shipped("boards")) / f"{PROFILE_BASES[base]}.toml").read_text(encoding="utf-8")
    text = text.replace(f'name = "{PROFILE_BASES[base]}"', f'name = "hostile-{name}"', 1)
    for old, new in changes:
        assert old in text, (name, old)
        text = text.replace(old, new, 1)
    return text


def damaged_models(good: bytes) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {"empty": b"", "text": b"a model, honest\n", "header-only": good[:16], "half": good[:len(good) // 2],
            "random-after-header": good[:8] + rng.integers(0, 256, 600, dtype=np.uint8).tobytes()}


# -- the probes -------------------------------------------------------------------------------------
def probes(w: Path, model: Path, silent: str) -> list[Probe]:
    """Every command × every hostile input that applies to it, in folder w."""
    dead = refused_port()
    long = str(w / LONG)
    out = lambda name: str(w / "out" / name)  # noqa: E731 - a fresh output folder per probe
    found: list[Probe] = []

    def add(command, kind, argv, expect, **extra):
        found.append(Probe(command, kind, [str(a) for a in argv], expect, **extra))

    # 1. long paths: every path option of every command
    longs = {
        "boards": [["boards", "--boards-dir", long]],
        "inspect": [["inspect", f"{long}.tflite"], ["inspect", model, "--boards-dir", long]],
        "optimize": [["optimize", "--data", f"{long}.npz", "--out", out("o1"), *FAST],
                     ["optimize", "--data", "digits", "--out", long, *FAST],
                     ["optimize", "--data", "digits", "--test", f"{long}.npz", "--out", out("o2"), *FAST],
                     ["optimize", "--data", "digits", "--arch", f"{long}.json", "--out", out("o3"), *FAST],
                     ["optimize", "--data", "digits", "--search", long, "--out", out("o4"), *FAST],
                     ["optimize", "--data", "digits", "--boards-dir", long, "--out", out("o5"), *FAST]],
        "evaluate": [["evaluate", f"{long}.tflite", "--data", "digits"],
                     ["evaluate", model, "--data", f"{long}.csv", "--image-size", "8"]],
        "search": [["search", "--data", f"{long}.npz", "--trials", "1", "--out", out("s1")],
                   ["search", "--data", "digits", "--image-size", "8", "--trials", "1", "--out", long],
                   ["search", "--show", f"{long}.json"]],
        "render": [["render", f"{long}.tflite", "--board", "esp32dev", "--out", out("r1")],
                   ["render", model, "--board", "esp32dev", "--out", long],
                   ["render", model, "--board", "esp32dev", "--out", out("r2"), "--labels", f"{long}.txt"],
                   ["render", model, "--board", "esp32dev", "--out", out("r3"), "--boards-dir", long]],
        "build": [["build", long]],
        "emulate": [["emulate", long]],
        "flash": [["flash", long, "--port", dead], ["flash", "--firmware", f"{long}.bin", "--chip", "esp32"],
                  ["flash", "--farm", f"{long}.toml", "--firmware", w / "app.bin", "--chip", "esp32"],
                  ["flash", "--farm", w / "farm-dead.toml", "--firmware", w / "app.bin", "--chip", "esp32",
                   "--out", long]],
        "bench": [["bench", "--port", dead, "--out", long],
                  ["bench", "--port", dead, "--expect-model", f"{long}.tflite", "--out", out("b1")],
                  ["bench", "--port", dead, "--validate", "2", "--data", f"{long}.npz", "--expect-model", model,
                   "--out", out("b2")],
                  ["bench", "--farm", f"{long}.toml", "--out", out("b3")]],
        "calibrate": [["calibrate", long, "--board", "esp32dev", "--out", out("c1")],
                      ["calibrate", w / "results-good.json", "--board", "esp32dev", "--out", long]],
        "virtual-device": [["virtual-device", f"{long}.tflite"], ["virtual-device", model, "--port-file", long]],
        "deploy": [["deploy", "--data", f"{long}.npz", "--out", out("d1"), *FAST],
                   ["deploy", "--data", "digits", "--out", long, *FAST],
                   ["deploy", "--data", "digits", "--farm", f"{long}.toml", "--out", out("d2"), *FAST]],
    }
    for command, cases in longs.items():
        for argv in cases:
            add(command, "long path", argv, 2)
    for i, argv in enumerate([["verify", f"{long}.json"], ["verify", "--port", dead, "--out", long],
                              ["verify", "--farm", f"{long}.toml", "--out", out("v-farm-long")]]):
        add("verify", "long path", [*argv, "--junit", w / f"junit-long-{i}.xml"], 2, junit=str(w / f"junit-long-{i}.xml"))
    add("verify", "long path", ["verify", w / "results-good.json", "--junit", f"{long}.xml"], 2)

    # 2. damaged models and data
    for name in damaged_models(b""):
        bad = w / f"damaged-{name}.tflite"
        add("inspect", "damaged model", ["inspect", bad], 2)
        add("evaluate", "damaged model", ["evaluate", bad, "--data", "digits", "--image-size", "8"], 2)
        add("render", "damaged model", ["render", bad, "--board", "esp32dev", "--out", out(f"rd-{name}")], 2)
        add("render", "damaged model", ["render", bad, "--board", "qemu-riscv32", "--out", out(f"rc-{name}")], 2)
        add("virtual-device", "damaged model", ["virtual-device", bad, "--tcp", "0"], 2)
        add("bench", "damaged model", ["bench", "--port", dead, "--expect-model", bad, "--out", out(f"bd-{name}")], 2)
        add("verify", "damaged model", ["verify", "--port", dead, "--expect-model", bad, "--out", out(f"vd-{name}"),
                                        "--junit", w / f"junit-dm-{name}.xml"], 2, junit=str(w / f"junit-dm-{name}.xml"))
    for name in ("not-a-zip.npz", "npy-renamed.npz", "x-val-alone.npz", "label-newline.npz", "empty.csv"):
        add("optimize", "damaged data", ["optimize", "--data", w / name, "--out", out(f"od-{name}"), *FAST], 2)
        add("evaluate", "damaged data", ["evaluate", model, "--data", w / name], 2)
        add("search", "damaged data", ["search", "--data", w / name, "--trials", "1", "--out", out(f"sd-{name}")], 2)
        add("deploy", "damaged data", ["deploy", "--data", w / name, "--out", out(f"dd-{name}"), *FAST], 2)
    add("render", "damaged data", ["render", model, "--board", "esp32dev", "--out", out("rl"), "--labels",
                                   w / "labels-newline.json"], 2)

    # 3. bad port URLs
    urls = ["foo://x", "socket://127.0.0.1", "socket://127.0.0.1:0", "socket://:4000", "rfc2217://host:abc",
            "spy:///dev/null", "hwgrep://", ""]
    for i, url in enumerate(urls):
        add("bench", "bad URL", ["bench", f"--port={url}", "--out", out(f"bu{i}")], 2)
        add("verify", "bad URL", ["verify", f"--port={url}", "--out", out(f"vu{i}"), "--junit", w / f"junit-u{i}.xml"],
            2, junit=str(w / f"junit-u{i}.xml"))
        add("flash", "bad URL", ["flash", "--firmware", w / "app.bin", "--chip", "esp32", f"--port={url}"], 2)
    for url in urls[:3]:
        add("deploy", "bad URL", ["deploy", "--data", "digits", f"--port={url}", "--out", out("du"), *FAST], 2)
    add("bench", "bad URL", ["bench", "--farm", w / "farm-bad-url.toml", "--out", out("bfu")], 2)
    add("verify", "bad URL", ["verify", "--farm", w / "farm-bad-url.toml", "--out", out("vfu"), "--junit",
                              w / "junit-farm-url.xml"], 2, junit=str(w / "junit-farm-url.xml"))
    add("flash", "bad URL", ["flash", "--farm", w / "farm-bad-url.toml", "--firmware", w / "app.bin", "--chip",
                             "esp32", "--out", out("ffu")], 2)

    # 4. the user's own files where a command writes
    writes = {
        "optimize": (["optimize", "--data", "digits", *FAST], ["model.tflite", "report.json", "report.html",
                                                               "run.json"]),
        "search": (["search", "--data", "digits", "--image-size", "8", "--trials", "1"],
                   ["best_arch.json", "search.html", "search.db"]),
        "render": (["render", model, "--board", "esp32dev"], ["platformio.ini", "README.md", "tinydeploy.json"]),
        "bench": (["bench", "--port", dead], ["results.json", "serial.log"]),
        "calibrate": (["calibrate", w / "results-good.json", "--board", "esp32dev"], ["esp32dev.toml"]),
        "deploy": (["deploy", "--data", "digits", *FAST], ["optimize/model.tflite", "optimize/report.json"]),
    }
    for command, (argv, names) in writes.items():
        for name in names:
            folder = w / "user" / f"{command}-{name.replace('/', '-')}"
            add(command, "user file", [*argv, "--out", folder], 2, planted={str(folder / name): b"the user's own\n"})
    for name in ("results.json", "serial.log"):
        folder = w / "user" / f"verify-{name}"
        add("verify", "user file", ["verify", "--port", dead, "--out", folder, "--junit", w / f"junit-user-{name}.xml"],
            2, planted={str(folder / name): b"the user's own\n"}, junit=str(w / f"junit-user-{name}.xml"))
    for command, argv in (("bench", ["bench", "--farm", w / "farm-dead.toml"]),
                          ("flash", ["flash", "--farm", w / "farm-dead.toml", "--firmware", w / "app.bin",
                                     "--chip", "esp32"])):
        for name in ("farm.json", f"a/{'results.json' if command == 'bench' else 'flash.log'}"):
            folder = w / "user" / f"{command}-farm-{name.replace('/', '-')}"
            planted = {str(folder / name): b"the user's own\n"}
            # a board's own file fails that board's row (exit 1); farm.json the whole run (exit 2)
            add(command, "user file", [*argv, "--out", folder], 2 if name == "farm.json" else 1, planted=planted)

    # 5. a second run on a busy --out
    busy = {
        "optimize": ["optimize", "--data", "digits", *FAST], "search": ["search", "--data", "digits", "--trials", "1"],
        "render": ["render", model, "--board", "esp32dev"], "bench": ["bench", "--port", silent, "--timeout", "2"],
        "calibrate": ["calibrate", w / "results-good.json", "--board", "esp32dev"],
        "flash": ["flash", "--farm", w / "farm-dead.toml", "--firmware", w / "app.bin", "--chip", "esp32"],
        "deploy": ["deploy", "--data", "digits", *FAST],
    }
    for command, argv in busy.items():
        folder = str(w / "busy" / command)
        add(command, "concurrent run", [*argv, "--out", folder], 1, locked_out=folder)
    folder = str(w / "busy" / "verify")
    add("verify", "concurrent run", ["verify", "--port", silent, "--timeout", "2", "--out", folder, "--junit",
                                     w / "junit-busy.xml"], 1, locked_out=folder, junit=str(w / "junit-busy.xml"))

    # 6. forged results, and 7. boards that fail under verify --junit
    for name in FORGED:
        add("verify", "forged results", ["verify", w / f"forged-{name}.json", "--max-latency-ms", "100", "--junit",
                                         w / f"junit-f-{name}.xml"], 2, junit=str(w / f"junit-f-{name}.xml"))
        add("calibrate", "forged results", ["calibrate", w / f"forged-{name}.json", "--board", "esp32dev", "--out",
                                            out(f"cf-{name}")], 2)
    for name, port in (("refused", dead), ("missing", str(w / "ttyUSB-none")), ("silent", silent)):
        add("verify", "failed board", ["verify", "--port", port, "--timeout", "2", "--out", out(f"vb-{name}"),
                                       "--junit", w / f"junit-b-{name}.xml"], 1, junit=str(w / f"junit-b-{name}.xml"))
    add("verify", "failed board", ["verify", "--farm", w / "farm-dead.toml", "--timeout", "2", "--out", out("vbf"),
                                   "--junit", w / "junit-b-farm.xml"], 1, junit=str(w / "junit-b-farm.xml"))

    # 8. hostile board profiles: each value class, on every command that reads a profile
    for name, (base, _) in HOSTILE_PROFILES.items():
        folder, board = w / "profiles" / name, f"hostile-{name}"
        add("boards", "hostile profile", ["boards", "--boards-dir", folder], 2)
        add("inspect", "hostile profile", ["inspect", model, "--board", board, "--boards-dir", folder], 2)
        add("render", "hostile profile", ["render", model, "--board", board, "--boards-dir", folder, "--out",
                                          out(f"rp-{name}")], 2)
    for name in ("clock-zero", "cycles-nan", "baud-zero", "newline-in-pio-board"):
        folder, board = w / "profiles" / name, f"hostile-{name}"
        add("optimize", "hostile profile", ["optimize", "--data", "digits", "--board", board, "--boards-dir", folder,
                                            "--out", out(f"op-{name}"), *FAST], 2)
        add("search", "hostile profile", ["search", "--data", "digits", "--board", board, "--boards-dir", folder,
                                          "--trials", "1", "--out", out(f"sp-{name}")], 2)
        add("deploy", "hostile profile", ["deploy", "--data", "digits", "--board", board, "--boards-dir", folder,
                                          "--out", out(f"dp-{name}"), *FAST], 2)
        add("calibrate", "hostile profile", ["calibrate", w / "results-good.json", "--board", board, "--boards-dir",
                                             folder, "--out", out(f"cp-{name}")], 2)
        add("bench", "hostile profile", ["bench", "--port", dead, "--profile", "--boards-dir", folder, "--out",
                                         out(f"bp-{name}")], 2)
        add("verify", "hostile profile", ["verify", w / "results-good.json", "--board", board, "--boards-dir", folder,
                                          "--junit", w / f"junit-p-{name}.xml"], 2, junit=str(w / f"junit-p-{name}.xml"))

    # 9. usage conflicts under --junit: the file is still written
    for i, argv in enumerate([["verify", "--farm", w / "farm-dead.toml", "--port", dead],
                              ["verify", w / "results-good.json", "--farm", w / "farm-dead.toml"],
                              ["verify", w / "results-good.json", "--port", dead],
                              ["verify"],
                              ["verify", w / "results-good.json", "--min-agreement", "2"]]):
        add("verify", "usage conflict", [*argv, "--out", out(f"vc{i}"), "--junit", w / f"junit-c-{i}.xml"], 2,
            junit=str(w / f"junit-c-{i}.xml"))
    return found


def prepare(w: Path, model_bytes: bytes) -> Path:
    """The files the probes name: a model, damaged ones, data, results, farm files, an image."""
    model = w / "model.tflite"
    model.write_bytes(model_bytes)
    for name, data in damaged_models(model_bytes).items():
        (w / f"damaged-{name}.tflite").write_bytes(data)
    x, y = np.zeros((20, 8, 2), np.float32), np.arange(20) % 2
    (w / "not-a-zip.npz").write_text("x_train,y_train\n")
    np.save(w / "arr.npy", x)
    os.replace(w / "arr.npy", w / "npy-renamed.npz")
    np.savez(w / "x-val-alone.npz", x_train=x, y_train=y, x_val=x)
    np.savez(w / "label-newline.npz", x_train=x, y_train=np.array(["up\ndown", "left"] * 10))
    (w / "empty.csv").write_text("")
    (w / "labels-newline.json").write_text(json.dumps({"labels": ["up\ndown"] + [str(i) for i in range(9)]}))
    (w / "results-good.json").write_text(json.dumps(results()))
    for name, text in FORGED.items():
        (w / f"forged-{name}.json").write_text(text)
    (w / "app.bin").write_bytes(b"\xe9" + bytes(4095))
    (w / "farm-bad-url.toml").write_text('[[board]]\nname = "a"\nport = "telnet://board:23"\n')
    (w / "farm-dead.toml").write_text(f'[[board]]\nname = "a"\nport = "{refused_port()}"\nreset = "none"\n')
    for name in HOSTILE_PROFILES:
        (w / "profiles" / name).mkdir(parents=True)
        (w / "profiles" / name / f"{name}.toml").write_text(hostile_profile(name), encoding="utf-8")
    return model


# -- running them -------------------------------------------------------------------------------------
def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.is_dir() else set()


def _hold(folder: str) -> subprocess.Popen:
    """Another run holding folder's lock, as a running tinydeploy command does."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path\n"
                               "from tinydeploy.core.outputs import locked\n"
                               "with locked(Path(sys.argv[1])):\n print('held', flush=True); time.sleep(600)", folder],
                              stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    return holder


def run(probe: Probe, cwd: Path) -> Outcome:
    for path, data in probe.planted.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    holder = _hold(probe.locked_out) if probe.locked_out else None
    before = _tree(Path(probe.locked_out)) if probe.locked_out else set()
    try:
        done = subprocess.run([sys.executable, "-m", "tinydeploy", *probe.argv, "--json"], cwd=cwd, capture_output=True,
                              text=True, timeout=TIMEOUT)
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired:
        code, out, err = None, "", f"no answer within {TIMEOUT} s"
    finally:
        if holder:
            holder.kill()
            holder.wait()
    outcome = Outcome(probe, code, last_line=(err.strip().splitlines() or [""])[-1][:200])
    try:
        json.loads(out)
        one_document = True
    except ValueError:
        one_document = False
    if code is None:
        outcome.internal = "hang"
    elif "internal error" in err or "Traceback" in err:
        outcome.internal = "internal error"
    elif code not in (0, 1, 2):
        outcome.internal = f"exit {code}"
    elif not one_document:
        outcome.internal = "stdout is not one JSON document"
    outcome.overwritten = [p for p, data in probe.planted.items() if not Path(p).is_file()
                           or Path(p).read_bytes() != data]
    if probe.locked_out and _tree(Path(probe.locked_out)) - before:
        outcome.overwritten.append(f"{probe.locked_out} (written while another run held it)")
    outcome.junit_missing = bool(probe.junit) and not Path(probe.junit).is_file()
    return outcome


def concurrent_benches(w: Path, silent: str) -> Outcome:
    """Two real `bench` runs on one --out: the second must stop at once (exit 1), naming the first's pid."""
    folder = w / "busy" / "bench-pair"
    argv = ["bench", "--port", silent, "--timeout", "5", "--out", str(folder)]
    first = subprocess.Popen([sys.executable, "-m", "tinydeploy", *argv], cwd=w, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (folder / ".tinydeploy.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    outcome = run(Probe("bench", "concurrent run", argv, 1), w)
    if outcome.code == 1 and f"pid {first.pid}" not in outcome.last_line:
        outcome.internal = "the second run did not name the first's pid"
    first.wait(timeout=120)
    return outcome


def profile_from_another_folder(w: Path, model: Path) -> Outcome:
    """A project rendered for a user's profile (given by a relative --boards-dir) is built from
    another folder: build must find the profile it was rendered with (exit 0; 2 said "unknown
    board" before). The board is the emulated one under another name: its build is a short make."""
    text = (ROOT / "boards" / "qemu-riscv32.toml").read_text(encoding="utf-8")
    (w / "here" / "mine").mkdir(parents=True)
    (w / "here" / "mine" / "my-qemu.toml").write_text(text.replace('name = "qemu-riscv32"', 'name = "my-qemu"'))
    project = w / "here" / "project"
    rendered = run(Probe("render", "profile path", ["render", str(model), "--board", "my-qemu", "--boards-dir", "mine",
                                                    "--engine", "c", "--out", "project"], 0), w / "here")
    if rendered.code != 0:
        return rendered
    elsewhere = w / "elsewhere"
    elsewhere.mkdir()
    return run(Probe("build", "profile path", ["build", str(project)], 0), elsewhere)


COLUMNS = ("command", "hostile", "exit 2", "exit 1", "exit 0", "internal", "unexpected", "overwritten", "no junit")


def table(outcomes: list[Outcome]) -> str:
    rows = []
    commands = list(dict.fromkeys(o.probe.command for o in outcomes))
    for command in [*commands, "total"]:
        mine = [o for o in outcomes if command in (o.probe.command, "total")]
        rows.append((command, len(mine), sum(o.code == 2 and not o.internal for o in mine),
                     sum(o.code == 1 and not o.internal for o in mine), sum(o.code == 0 and not o.internal for o in mine),
                     sum(bool(o.internal) for o in mine),
                     sum(not o.internal and o.code != o.probe.expect for o in mine),
                     sum(bool(o.overwritten) for o in mine), sum(o.junit_missing for o in mine)))
    widths = [max(len(str(r[i])) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    line = lambda r: "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)  # noqa: E731
                               for i, (v, w) in enumerate(zip(r, widths)))
    return "\n".join([line(COLUMNS), line(["-" * w for w in widths]), *map(line, rows[:-1]),
                      line(["-" * w for w in widths]), line(rows[-1])])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="probes run at once (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--kind", action="append", default=[],
                        help="run only probes of this kind ('hostile profile', 'usage conflict', 'profile path'...); "
                             "repeatable")
    parser.add_argument("--verbose", action="store_true", help="list every probe with the last line it printed")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    started = time.monotonic()
    w = Path(tempfile.mkdtemp(prefix="tinydeploy-probe-"))
    silent = SilentBoard()
    try:
        model = prepare(w, tiny_model())
        todo = [p for p in probes(w, model, silent.url) if not args.kind or p.kind in args.kind]
        with ThreadPoolExecutor(args.workers) as pool:
            outcomes = list(pool.map(lambda p: run(p, w), todo))
        if not args.kind or "concurrent run" in args.kind:
            outcomes.append(concurrent_benches(w, silent.url))
        if not args.kind or "profile path" in args.kind:
            outcomes.append(profile_from_another_folder(w, model))
    finally:
        silent.close()
        if not args.keep:
            shutil.rmtree(w, ignore_errors=True)
    outcomes.sort(key=lambda o: o.probe.command)
    print(table(outcomes))
    print(f"\n{len(outcomes)} hostile inputs in {time.monotonic() - started:.0f} s"
          + (f"; work folder kept: {w}" if args.keep else ""))
    worth_a_look = [o for o in outcomes if args.verbose or o.internal or o.overwritten or o.junit_missing
                    or o.code != o.probe.expect]
    for o in worth_a_look:
        what = o.internal or ("overwrote " + ", ".join(o.overwritten) if o.overwritten else
                              "no junit" if o.junit_missing else f"exit {o.code}, expected {o.probe.expect}")
        what += "" if o.internal or o.overwritten or o.junit_missing or o.code != o.probe.expect else " (as expected)"
        print(f"- {o.probe.command} ({o.probe.kind}): {what}: tinydeploy {' '.join(o.probe.argv)[:160]}\n"
              f"    {o.last_line}")
    met = not any(o.internal or o.overwritten or o.junit_missing for o in outcomes)
    print(f"goal (0 internal errors, 0 overwritten user files, 0 missing JUnit files): {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
