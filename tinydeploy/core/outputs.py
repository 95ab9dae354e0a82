"""Where tinydeploy writes: output folders checked once, files written whole or not at all,
and nothing written through a symlink or outside the folder it was given; and the one way
it reads back a JSON file it wrote (or a user gave)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tinydeploy.core.errors import BadInput, StepFailed


def output_folder(value: str | Path, option: str = "--out") -> Path:
    """The folder an option names, created if missing.

    Raises:
        BadInput: an empty value, a path that is a file (or runs through one), or a folder
            that can't be created (naming the value and why).
    """
    text = str(value)
    if not text.strip():
        raise BadInput(f"{option} is empty: give a folder to write into")
    folder = Path(text)
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"{option} {text}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{option} {text}: can't create the folder ({exc.strerror or exc})") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInput(f"{option} {text}: the folder is not writable")
    return folder


def inside(root: Path, relative: str) -> Path:
    """root/relative, refused when relative leaves root or any part of it below root is a
    symlink (followed, it could write anywhere) or the file itself is a folder."""
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or ".." in parts:
        raise BadInput(f"{relative}: not a path inside {root}")
    path = root
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise BadInput(f"{path} is a symlink; tinydeploy writes only inside {root}: remove it first")
    if path.is_dir():
        raise BadInput(f"{path} is a folder where tinydeploy writes a file: move it away")
    return path


def write_atomically(path: Path, content: str | bytes) -> None:
    """Write a file so that it holds the old content or the new one, never a part: a
    temporary file beside it, then a rename. A symlink at path is replaced, not followed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        with open(tmp, "xb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise StepFailed(f"{path}: can't write ({exc.strerror or exc})") from exc


def read_json(path: Path, missing: str):
    """A JSON file's content.

    Raises:
        BadInput: the file is missing (with the `missing` explanation), not UTF-8 or not JSON.
    """
    if not path.is_file():
        raise BadInput(f"{path}: {missing}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: not JSON ({exc})") from exc
