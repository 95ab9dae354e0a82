"""The documentation stays true: synopses and the command table are the CLI's own, every
command line shown parses, the README stays short, and docs/api.md's examples run."""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.unit
def test_synopses_and_the_command_table_are_what_the_cli_says():
    generate = _generator()
    for path in generate.DOCS:
        text = path.read_text()
        current = generate.BLOCK.sub(
            lambda m: m.group(1) + (generate.generated(m["kind"], m["name"], None) or m["body"]) + m.group(5), text)
        assert current == text, f"{path.name} is out of date with the CLI: run `make docs` (or docs/generate.py " \
                                "--synopses-only)"


@pytest.mark.unit
def test_every_command_has_its_synopsis_in_docs_commands():
    generate = _generator()
    documented = set(re.findall(r"<!-- tinydeploy:synopsis ([\w-]+) -->", (ROOT / "docs/commands.md").read_text()))
    assert documented == set(generate.commands())


@pytest.mark.unit
def test_every_command_line_in_the_docs_parses_as_printed():
    from tinydeploy.cli import build_parser
    parser = build_parser()
    checked = 0
    for path in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        for block in re.findall(r"```[a-z]*\n(.*?)```", path.read_text(), re.S):
            transcript = any(line.startswith("$ ") for line in block.splitlines())
            for line in block.splitlines():
                if transcript and not line.startswith("$ "):
                    continue  # a command's output, not a command
                line = re.sub(r"^\$ ", "", line.strip())
                if not line.startswith("tinydeploy ") or "[-h]" in line:  # a synopsis, not a command
                    continue
                line = re.sub(r"\$\([^)]*\)", "VALUE", line.split("  #")[0])  # a shell substitution is one word
                words = shlex.split(line)[1:]
                if not words or words[0].startswith("--version"):
                    continue
                words = [w for w in words if w != "&"]
                parser.parse_args(words)  # BadInput (a usage error) fails the test, naming the line
                checked += 1
    assert checked >= 15


@pytest.mark.unit
def test_the_hil_workflows_commands_parse_and_its_files_exist():
    from tinydeploy.cli import build_parser
    workflow = (ROOT / ".github/workflows/hil-emulated.yml").read_text().replace("\\\n", " ")
    commands = re.findall(r"\.hil/bin/tinydeploy ([^\n$&]+)", workflow)
    assert {c.split()[0] for c in commands} == {"render", "build", "emulate", "verify"}
    for command in commands:
        build_parser().parse_args(shlex.split(command))
    assert "docs/hil/test_board.py" in workflow and (ROOT / "docs/hil/test_board.py").is_file()


@pytest.mark.unit
def test_the_readme_stays_an_introduction():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for section in ("## Install", "## Quickstart", "## Commands", "**Exit codes:**", "## Layout", "pip install"):
        assert section in readme


@pytest.mark.slow
def test_the_python_api_examples_run(tmp_path, monkeypatch, rv32_tools):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)
    assert len(blocks) >= 4
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert (tmp_path / "fw" / "platformio.ini").is_file() and (tmp_path / "rv32" / "build").is_dir()
