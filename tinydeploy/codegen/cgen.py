"""Small C-syntax helpers used by the renderers, so no generator formats C inline."""

from __future__ import annotations

import re

C_KEYWORDS = frozenset("""auto break case char const continue default do double else enum extern float for
goto if inline int long register restrict return short signed sizeof static struct switch typedef union
unsigned void volatile while _Bool _Complex _Imaginary alignas alignof bool class constexpr delete
explicit false friend mutable namespace new noexcept nullptr operator private protected public
static_assert template this throw true try typename using virtual""".split())
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Printable ASCII that means nothing special inside a string literal or a comment: a backslash
# (escapes, line splices), '?' (trigraphs such as ??/ and ??=), quotes and '*' are left out.
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !#$%&()+,-./:;<=>@[]^_{|}~")
_SIMPLE_ESCAPES = {'"': '\\"', "\\": "\\\\"}


def identifier(name: str) -> str:
    """name, checked to be a valid C/C++ identifier that is neither a keyword nor reserved
    for the implementation (a leading underscore and capital, or a double underscore)."""
    reserved = name.startswith("__") or re.match(r"^_[A-Z]", name) or "__" in name
    if not _IDENTIFIER.match(name) or name in C_KEYWORDS or reserved:
        raise ValueError(f"'{name}' is not usable as a C identifier")
    return name


def _utf8(text: str) -> bytes:
    """text as UTF-8; lone surrogates (file names decoded with surrogateescape, or broken
    text) keep their bytes instead of failing."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def string_literal(text: str) -> str:
    """A C/C++ string literal holding text's UTF-8 bytes, valid for any Unicode input.

    A quote and a backslash get their two-character escapes; everything else but plain
    printable ASCII becomes a three-digit octal escape: an octal escape
    never takes more than three digits, so a digit that follows can't join it (a hex escape
    would swallow it), and no trigraph, quote or line break survives.
    """
    out = []
    for byte in _utf8(text):
        char = chr(byte)
        out.append(char if char in _PLAIN else _SIMPLE_ESCAPES.get(char, f"\\{byte:03o}"))
    return '"' + "".join(out) + '"'


def comment(text: str) -> str:
    """text made safe for a one-line // comment (or inside /* */, or a # comment): plain
    printable ASCII is kept, anything else shows as <U+XXXX>, so user text can neither end
    the comment (a line break, a trailing backslash, */: '*' is not plain) nor form a trigraph."""
    return "".join(char if char in _PLAIN else f"<U+{ord(char):04X}>" for char in text)


def byte_rows(data: bytes, per_row: int = 12) -> list[str]:
    """The bytes as rows of '0x..' literals, each row ending in a comma."""
    return [" ".join(f"0x{b:02x}," for b in data[i:i + per_row]) for i in range(0, len(data), per_row)]


def float_literal(value: float) -> str:
    text = repr(float(value))
    return (text if ("e" in text or "." in text) else text + ".0") + "f"
