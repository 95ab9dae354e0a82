"""The virtual device's protocol equals the firmware's, and the host parser is robust."""

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinydeploy.core.protocol import DeviceProtocol, parse_line

ROOT = Path(__file__).resolve().parents[1]

SCRIPTS = [
    "name%profile%info%",
    "db load 4%db 0102%db 03fF%infer 10 2%results%",
    "bogus 1 2%" + "x" * 81 + "%db load 5%db load%db 0102%",
    "db load 4%db 01020%db zz%db 0102030405%infer 3 1%",
    "db load 4%db 01020304%infer 0%infer x%infer 2%\r\nname%\n",
    "infer%db load 4%db 7f7f7f7f%infer 1%results%",
]


def python_device(script: bytes | str, ready: bool = True, fail_at: int = 0, profile: bool = True) -> bytes:
    """The Python twin with the same fake model and clock as tests/protocol_host.c."""
    out = []
    state = {"us": 1000, "invokes": 0}

    def invoke(data: bytes):
        if fail_at:
            state["invokes"] += 1
            if state["invokes"] >= fail_at:
                return None
        total = sum(b - 256 if b > 127 else b for b in data)
        state["us"] += 7
        return [((total + i + 128) % 256) - 128 for i in range(3)]

    def profiled(data: bytes):
        outputs = invoke(data)
        return None if outputs is None else (outputs, [(i + 1) * 7 + data[0] for i in range(3)])

    device = DeviceProtocol(out.append, lambda: state["us"], invoke,
                            lambda: '{"arena_bytes":2048,"board":"host"}', 4, 3, "host", "fake", ready,
                            profiled if profile else None)
    if not ready:
        device.error("arena allocation failed: requested 2048 bytes")
    device.boot()
    device.feed(script.encode() if isinstance(script, str) else script)
    return b"".join(out)


def firmware_device(exe, script: bytes | str, ready: bool = True, fail_at: int = 0, profile: bool = True) -> bytes:
    args = [str(exe)] + ([] if ready else ["--not-ready"]) + (["--fail-at", str(fail_at)] if fail_at else []) \
        + ([] if profile else ["--no-profile"])
    return subprocess.run(args, input=script.encode() if isinstance(script, str) else script,
                          capture_output=True, check=True, timeout=30).stdout


@pytest.fixture(scope="module")
def c_device(tmp_path_factory):
    exe = tmp_path_factory.mktemp("proto") / "protocol_host"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'firmware'}",
                    str(ROOT / "firmware" / "td_protocol.c"), str(ROOT / "tests" / "protocol_host.c"),
                    "-o", str(exe)], check=True)
    return exe


@pytest.mark.host
@pytest.mark.parametrize("script", SCRIPTS)
def test_virtual_device_protocol_matches_the_firmware_byte_for_byte(c_device, script):
    assert python_device(script) == firmware_device(c_device, script)


@pytest.mark.host
def test_not_ready_devices_match(c_device):
    script = "db load 4%infer 1%name%"
    assert python_device(script, ready=False) == firmware_device(c_device, script, ready=False)


# Cases where the two sides once disagreed: leading zeros, counts past 10 digits, a NUL in a
# command, bytes above 127, a failing invoke.
DRIFTED = [("db load 4%db 01020304%infer 00000000001%", 0), ("db load 00000000004%", 0),
           ("db load 4%db 01020304%infer 1000000005 0%", 3), ("db load 4%db 01020304%infer 1000000010 0%", 0),
           ("na\0me%db\0 load 4%", 0), ("\xe9t\xe9%", 0), ("db load 4%db 01020304%infer 2 3%", 2),
           ("db load 4%db 01020304%infer 5 1%results%", 4), ("layers%db load 4%db ff020304%layers%results%", 0),
           ("db load 4%db 01020304%layers%layers%", 2)]


@pytest.mark.host
@pytest.mark.parametrize("script, fail_at", DRIFTED)
def test_the_cases_that_once_drifted_agree(c_device, script, fail_at):
    script = script.encode("latin-1")
    assert python_device(script, fail_at=fail_at) == firmware_device(c_device, script, fail_at=fail_at)


def _command():
    """One command of a random script: real commands with good and bad arguments, and junk."""
    count = st.one_of(st.integers(0, 12).map(str), st.integers(0, 2 * 10**9).map(str),
                      st.tuples(st.integers(0, 12), st.integers(1, 12)).map(lambda nz: "0" * nz[1] + str(nz[0])),
                      st.text("0123456789", min_size=1, max_size=14), st.text("0123456789 x-+", max_size=6))
    hexes = st.one_of(st.binary(max_size=6).map(bytes.hex), st.text("0123456789abcdefABCDEFgx ", max_size=12))
    pieces = st.lists(st.sampled_from(["\0", "\xff", "\xe9", "\x7f", " ", "  ", "name", "info", "db", "load", "infer",
                                       "results", "4", "01", "0102030405", "9" * 11]), max_size=8).map("".join)
    junk = st.one_of(pieces, st.binary(max_size=90).map(lambda b: b.replace(b"%", b"").decode("latin-1")))
    return st.one_of(
        st.sampled_from(["name", "profile", "info", "results", "db load 4", "db 01020304", "db load", "infer",
                         "infer 1", "layers", "layers 2"]),
        count.map(lambda n: f"db load {n}"), hexes.map(lambda h: f"db {h}"),
        st.tuples(count, count).map(lambda nw: f"infer {nw[0]} {nw[1]}"), count.map(lambda n: f"infer {n}"),
        junk, st.text(st.characters(max_codepoint=255, blacklist_characters="%"), max_size=3).map(lambda t: "x" * 78 + t))


SCRIPT = st.lists(st.tuples(_command(), st.sampled_from(["%", "%\r\n", "\n%", "%%"])), max_size=12).map(
    lambda parts: "".join(c + end for c, end in parts).encode("latin-1"))


@pytest.mark.host
@given(script=SCRIPT, ready=st.booleans(), fail_at=st.sampled_from([0, 0, 1, 2, 3, 7, 40]), profile=st.booleans())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_scripts_get_byte_identical_answers_from_the_firmware_and_its_twin(c_device, script, ready, fail_at,
                                                                                 profile):
    """A differential test: Hypothesis writes command scripts (digits, long numbers, bad hex,
    overlong lines, NULs, invoke failures) and both sides must print the same bytes. Huge
    infer counts run only with a failing invoke, which ends them."""
    if not fail_at and re.search(rb"infer [0-9]{5,}", script):
        fail_at = 40
    assert python_device(script, ready, fail_at, profile) == firmware_device(c_device, script, ready, fail_at, profile)


@pytest.mark.unit
def test_shared_constants_match_the_firmware_header():
    from tinydeploy.core import protocol
    header = (ROOT / "firmware" / "td_protocol.h").read_text()
    defined = {name: int(value) for name, value in re.findall(r"#define (TD_\w+) +(\d+)(?:UL)?\b", header)}
    assert defined == {"TD_MAX_COMMAND": protocol.MAX_COMMAND, "TD_INFO_SIZE": protocol.INFO_SIZE,
                       "TD_MAX_COUNT": protocol.MAX_COUNT}


VALID = ["m-ready", "m-init-done", "m-lap-us-123456", "m-results-[1,-2,127,-128]", "e-[db data must be hex digits]",
         "m-layer-3-12345",
         'm-info-{"arena_bytes":1}', "m-name-dut-[esp32]", "m-infer-done"]
NOISE = st.text(alphabet=st.characters(blacklist_characters="\n"), max_size=60)


@pytest.mark.unit
@given(NOISE)
@settings(max_examples=400)
def test_random_text_never_becomes_a_figure(text):
    line = parse_line(text)
    if line.kind in ("lap", "results"):
        # Only possible when the text really carries a well-formed protocol line.
        assert line.text in text
        if line.kind == "lap":
            assert line.text == f"m-lap-us-{line.value}"
        else:
            assert line.text == "m-results-[" + ",".join(map(str, line.value)) + "]"


@pytest.mark.unit
@given(NOISE.filter(lambda s: "m-" not in s and "e-[" not in s), st.sampled_from(VALID))
def test_protocol_lines_survive_boot_noise_before_them(noise, valid):
    line = parse_line(noise + valid)
    assert line.text == valid
    assert line.kind != "noise"


@pytest.mark.unit
@given(st.sampled_from(VALID), st.integers(min_value=1, max_value=40))
def test_truncated_lines_are_noise_or_exact(valid, cut):
    if cut >= len(valid):
        return
    line = parse_line(valid[:cut])
    if line.kind in ("lap", "layer"):
        assert valid.startswith(line.text)  # a shorter number is still that line's digits
    assert line.kind in ("noise", "other-m", "lap", "layer", "ready", "init", "info", "name")
    assert line.kind != "results"  # an unterminated result list is never taken


@pytest.mark.unit
@given(st.lists(st.one_of(st.sampled_from(["ets Jun  8 2016 00:22:57", "rst:0x1 (POWERON_RESET)",
                                            "I (31) boot: ESP-IDF v5.5", "\x00\xff\xfe garbage"]),
                          NOISE), max_size=8))
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
          deadline=None, max_examples=60)
def test_a_connection_skips_boot_noise_and_reports_errors(tmp_path_factory, noise_lines):
    """Through a real pyserial loop:// port (a FIFO that also echoes what the host sends):
    boot noise, the boot m-ready, the reply to name%, then an unexpected error."""
    from tinydeploy.device.connection import Connection, DeviceError
    log = tmp_path_factory.mktemp("loop") / "serial.log"
    conn = Connection("loop://", 115200, log, timeout=2.0)
    try:
        junk = "".join(n.replace("\n", " ").replace("\r", " ") + "\r\n" for n in noise_lines)
        conn.serial.write((junk + "m-ready\r\nm-name-dut-[loop]\r\nm-ready\r\n").encode("latin-1", "replace"))
        conn.sync(boot_wait=2.0)
        conn.serial.write(b"e-[unexpected]\r\nm-ready\r\n")
        with pytest.raises(DeviceError, match="with an error: unexpected"):
            conn.command("info")
    finally:
        conn.close()


@pytest.mark.unit
@pytest.mark.parametrize("late", [False, True])
def test_a_failed_setup_is_reported_in_the_firmwares_own_words(tmp_path, late):
    """The boot lines before the reply to name% are kept, also when the board boots only after
    name% was sent; a failed setup is then named with what the firmware printed before it."""
    import threading
    from tinydeploy.device.connection import Connection
    conn = Connection("loop://", 115200, tmp_path / "serial.log", timeout=2.0)
    boot = (b"I (31) boot: ESP-IDF v5.5\r\nFailed to resize buffer. Requested: 13168, available 13084\r\n"
            b"e-[arena allocation failed with 15424 bytes]\r\nm-init-done\r\nm-ready\r\n")
    reply = b"m-name-dut-[loop]\r\nm-ready\r\n"
    try:
        if late:
            timer = threading.Timer(0.3, lambda: conn.serial.write(b"\r\n" + boot + reply))
            timer.start()
            conn.sync(boot_wait=0.1)
            timer.join()
        else:
            conn.serial.write(boot + reply)
            conn.sync(boot_wait=2.0)
        failure = conn.setup_failure({"arena_used_bytes": None,
                                      "setup_error": "arena allocation failed with 15424 bytes"})
        assert failure.startswith("the firmware could not set up the model: arena allocation failed with 15424 "
                                  "bytes. It printed at boot:")
        assert "Failed to resize buffer. Requested: 13168, available 13084" in failure
        assert conn.setup_failure({"arena_used_bytes": 1000, "setup_error": None}) is not None  # the boot e-[...]
    finally:
        conn.close()
