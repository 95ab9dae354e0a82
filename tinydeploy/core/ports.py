"""The serial ports tinydeploy accepts, checked where a port enters (--port, a farm file), so
that a malformed one is bad input (exit 2) naming what is accepted, not a failure to open it
(exit 1, "likely cabling") or an error inside pyserial."""

from __future__ import annotations

from urllib.parse import urlsplit

from tinydeploy.core.errors import BadInput

# The pyserial URL schemes tinydeploy accepts, and the address each takes. Of pyserial's
# others, spy:// only logs the traffic (bench logs every line to OUT/serial.log itself),
# alt:// picks a serial class and cp2110:// needs a HID library: none is a board's address.
SCHEMES = {
    "socket": "socket://HOST:PORT (a raw TCP port: an emulator, the virtual device, ser2net)",
    "rfc2217": "rfc2217://HOST:PORT (a network serial server)",
    "hwgrep": "hwgrep://PATTERN (the first port whose description or USB IDs match)",
    "loop": "loop:// (pyserial's loopback, for tests)",
}
NETWORK = ("socket", "rfc2217")


def accepted() -> str:
    """What --port accepts, in words."""
    return "a device path (/dev/ttyUSB0, COM3) or " + ", ".join(SCHEMES.values())


def check_port(value, option: str = "--port") -> str:
    """value, when it is a port tinydeploy can open: a device path, or a URL of SCHEMES with
    the address its scheme needs.

    Args:
        value: the port as given.
        option: where it came from, for messages ("--port", "board 2's port").

    Returns:
        value, unchanged.

    Raises:
        BadInput: empty, not text, holding a NUL or line break, an unknown URL scheme, or a
            network URL without a host or a port number (1-65535).
    """
    if not isinstance(value, str):
        raise BadInput(f"{option} {value!r}: not text; give {accepted()}")
    if not value.strip():
        raise BadInput(f"{option} is empty: give {accepted()}")
    if any(c in value for c in "\0\r\n"):
        raise BadInput(f"{option} {value!r}: holds a NUL or line break; give {accepted()}")
    if "://" not in value:
        return value  # a device path: whether it exists is the board's business (StepFailed)
    scheme = value.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise BadInput(f"{option} {value}: unknown URL scheme '{scheme}://'; tinydeploy accepts {accepted()}")
    if scheme in NETWORK:
        parts = urlsplit(value)
        try:
            number = parts.port
        except ValueError:  # not a number, or outside 0-65535
            number = -1
        if not parts.hostname or number is None or not 0 < number < 65536:
            raise BadInput(f"{option} {value}: {scheme}:// needs a host and a port number from 1 to 65535, "
                           f"as in {SCHEMES[scheme].split(' ')[0]}")
    if scheme == "hwgrep" and not value.split("://", 1)[1].split("&")[0].strip():
        raise BadInput(f"{option} {value}: hwgrep:// needs a pattern, as in {SCHEMES['hwgrep'].split(' ')[0]}")
    return value
