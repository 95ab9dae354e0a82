"""User text (model names, labels) entering generated C and C++: escaped so that any Unicode
compiles with warnings as errors and reads back byte for byte on the device."""

import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinydeploy.codegen import cgen
from tinydeploy.runtime import tflm
from tinydeploy.core.boards import get_board
from tinydeploy.core.model import load_model
from tinydeploy.toolchain.project import write_project
from tinydeploy.codegen.render import RenderOptions, render
from tests.helpers import need_programs

WARNINGS = ["-Wall", "-Wextra", "-Werror"]
# Pieces that have broken generated code: comment ends, line splices, trigraphs, quotes,
# surrogates (lone, and the halves of a pair), hex digits after an escape, line breaks.
NASTY = ["*/", "/*", "//", "??=", "??/", "??'", "\\", "\\\n", '"', "'", "\n", "\r", "\t", "\x7f", "\u2028",
         "\ud83d", "\udc31", "\udc80", "\U0001F431", "0", "7", "f", "e\u0301", "#error X", "%s", "%n"]
TEXT = st.lists(st.one_of(st.characters(), st.sampled_from(NASTY)), min_size=1, max_size=12).map("".join)


def expected(text: str) -> bytes:
    """What a C program sees through the literal: the UTF-8 bytes, up to an embedded NUL."""
    return cgen._utf8(text).split(b"\0")[0]


@pytest.mark.unit
@given(TEXT)
def test_a_string_literal_is_one_line_of_plain_ascii(text):
    literal = cgen.string_literal(text)
    assert literal.startswith('"') and literal.endswith('"') and literal.isascii()
    assert "\n" not in literal and "\r" not in literal and "??" not in literal


@pytest.mark.unit
@given(TEXT)
def test_a_comment_cannot_end_early_or_splice(text):
    safe = cgen.comment(text)
    assert safe.isascii() and "\n" not in safe and "\r" not in safe
    assert "*/" not in safe and "/*" not in safe and "\\" not in safe and "??" not in safe


@pytest.mark.unit
@pytest.mark.parametrize("name", ["int", "class", "__x", "_Foo", "a__b", "1abc", "a-b", ""])
def test_reserved_or_malformed_identifiers_are_refused(name):
    with pytest.raises(ValueError, match="not usable as a C identifier"):
        cgen.identifier(name)


@pytest.fixture(scope="module")
def measured_cnn(int8_cnn):
    return tflm.measure_arena(load_model(int8_cnn))


@pytest.fixture(scope="module")
def compilers():
    need_programs("gcc", "g++", packages="gcc g++")


def _run(tmp_path, compile_command, sources, main_name, main_text):
    """Compile main_text with the project's sources (warnings as errors), run it, return its stdout."""
    (tmp_path / main_name).write_text(main_text)
    exe = tmp_path / "show"
    subprocess.run([*compile_command, *WARNINGS, f"-I{tmp_path / 'src'}", *sources, str(tmp_path / main_name),
                    "-o", str(exe)], check=True, capture_output=True)
    return subprocess.run([str(exe)], check=True, capture_output=True).stdout


@pytest.mark.host
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=TEXT, labels=st.lists(TEXT, min_size=10, max_size=10))
def test_any_model_name_and_labels_compile_and_read_back_tflm(tmp_path_factory, compilers, int8_cnn, measured_cnn,
                                                              name, labels):
    """The TFLM project's model data and board header, with user text in them, compile as C++
    with warnings as errors, and the program prints that text's bytes back."""
    tmp_path = tmp_path_factory.mktemp("tflm")
    model = load_model(int8_cnn)
    files = render(model, get_board("esp32dev"), measured_cnn, RenderOptions(labels=tuple(labels)),
                   model_name=name)
    write_project(files, tmp_path)
    header = files["src/model_data.h"].splitlines()
    assert header[1].startswith("// Model: ") and header[2].startswith("#ifndef")  # the comment stayed one line
    shown = cgen._utf8(name) + b" " + model.sha256[:12].encode()
    out = _run(tmp_path, ["g++", "-std=c++17", f"-DNAME_BYTES={len(shown)}"],
               [str(tmp_path / "src" / "model_data.cc"), str(tmp_path / "src" / "td_board.c")], "show.cc",
               '#include <stdio.h>\n#include <string.h>\n#include "model_data.h"\n#include "td_board.h"\n'
               "int main() {\n"
               "  fwrite(kModelName, 1, NAME_BYTES, stdout);  // the name may hold NUL bytes\n"
               "  if (kModelName[NAME_BYTES] != 0) return 4;\n"
               "  for (int i = 0; i < kLabelCount; ++i) { printf(\"\\n%zu:%s\", strlen(g_model_labels[i]), g_model_labels[i]); }\n"
               "  return kInfoFormat[0] == '{' ? 0 : 3;\n}\n")
    assert out.startswith(shown)
    rest, shown_labels = out[len(shown):], []
    while rest:  # "\n<length>:<bytes>" per label
        length, _, rest = rest[1:].partition(b":")
        shown_labels.append(rest[:int(length)])
        rest = rest[int(length):]
    assert shown_labels == [expected(label) for label in labels]


@pytest.mark.host
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=TEXT)
def test_any_model_name_compiles_and_reads_back_c_engine(tmp_path_factory, compilers, int8_cnn, name):
    """The C engine's board header, with the user's model name in it, compiles as C99
    (-pedantic, warnings as errors) and reads back byte for byte."""
    tmp_path = tmp_path_factory.mktemp("cengine")
    files = render(load_model(int8_cnn), get_board("esp32-c3-devkitm-1"), None, RenderOptions(engine="c"),
                   model_name=name)
    write_project(files, tmp_path)
    shown = cgen._utf8(name) + b" " + load_model(int8_cnn).sha256[:12].encode()
    out = _run(tmp_path, ["gcc", "-std=c99", "-pedantic", f"-DNAME_BYTES={len(shown)}"],
               [str(tmp_path / "src" / "td_board.c")], "show.c",
               '#include <stdio.h>\n#include <string.h>\n#include "td_board.h"\n'
               "int main(void) {\n"
               "  fwrite(kModelName, 1, NAME_BYTES, stdout);  /* the name may hold NUL bytes */\n"
               "  if (kModelName[NAME_BYTES] != 0) return 4;\n"
               "  return kInfoFormat[0] == '{' && kDeviceName[0] == 't' ? 0 : 3;\n}\n")
    assert out == shown
