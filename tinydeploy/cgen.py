"""Small C-syntax helpers used by the renderers, so no generator formats C inline."""

from __future__ import annotations

import json
import re

C_KEYWORDS = frozenset("""auto break case char const continue default do double else enum extern float for
goto if inline int long register restrict return short signed sizeof static struct switch typedef union
unsigned void volatile while _Bool _Complex _Imaginary alignas alignof bool class constexpr delete
explicit false friend mutable namespace new noexcept nullptr operator private protected public
static_assert template this throw true try typename using virtual""".split())
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def identifier(name: str) -> str:
    """name, checked to be a valid C/C++ identifier that is not a reserved word."""
    if not _IDENTIFIER.match(name) or name in C_KEYWORDS:
        raise ValueError(f"'{name}' is not usable as a C identifier")
    return name


def string_literal(text: str) -> str:
    """A C string literal holding text (JSON escaping is valid C escaping for these characters)."""
    escaped = json.dumps(text, ensure_ascii=True)
    return escaped.replace("?", "\\?")  # no trigraphs


def byte_rows(data: bytes, per_row: int = 12) -> list[str]:
    """The bytes as rows of '0x..' literals, each row ending in a comma."""
    return [" ".join(f"0x{b:02x}," for b in data[i:i + per_row]) for i in range(0, len(data), per_row)]


def float_literal(value: float) -> str:
    text = repr(float(value))
    return (text if ("e" in text or "." in text) else text + ".0") + "f"
