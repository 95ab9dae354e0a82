"""A rendered project's tinydeploy.json: which board (and which profile file) and engine it
was rendered for, so build, flash and emulate need no options to find them again."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tinydeploy.core.boards import Board, board_from_file, get_board, load_boards
from tinydeploy.core.errors import BadInput

PROJECT_FILE = "tinydeploy.json"


def project_file(banner: str, board: Board, engine: str, framework: str, model_sha256: str, arena_bytes: int,
                 model_contract: dict | None = None, model_slots: dict | None = None) -> str:
    """tinydeploy.json's text: what was rendered, for build, flash, emulate and bench; the
    contract a model image must meet to run on this firmware (tinydeploy.core.image), and,
    rendered with --model-partition, the model slots' partitions. The board's profile is
    recorded by its absolute path, so a command run from another folder finds it."""
    return json.dumps({"generated_by": banner, "board": board.name, "board_profile": os.path.abspath(board.path),
                       "engine": engine,
                       "framework": framework, "model_sha256": model_sha256,
                       "arena_bytes": arena_bytes, "baud": board.baud,
                       **({"model_contract": model_contract} if model_contract else {}),
                       **({"model_slots": model_slots} if model_slots else {})}, indent=2, ensure_ascii=False) + "\n"


def read_project(project_dir: str | Path) -> dict:
    """A rendered project's tinydeploy.json.

    Raises:
        BadInput: no readable tinydeploy.json there.
    """
    from tinydeploy.core.errors import BadInput
    path = Path(project_dir) / PROJECT_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{project_dir}: no readable {PROJECT_FILE} ({exc}); give a folder `tinydeploy render` "
                       "wrote") from None
    if not isinstance(info, dict):
        raise BadInput(f"{path}: not a tinydeploy project file")
    return info


def rendered_board(project_dir: str | Path) -> Board | None:
    """The board profile a project was rendered for (from its tinydeploy.json: the profile file
    it was rendered with, a user's too, else the known board of that name), or None when the
    folder holds no readable tinydeploy.json."""
    try:
        info = json.loads((Path(project_dir) / PROJECT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not info.get("board"):
        return None
    profile = info.get("board_profile")
    if isinstance(profile, str) and Path(profile).is_file():  # the very profile it was rendered with
        board = board_from_file(profile)
        if board.name == info["board"]:
            return board
    if isinstance(profile, str) and info["board"] not in load_boards():
        raise BadInput(f"{project_dir} was rendered for board '{info['board']}' of the profile {profile}, which is "
                       "no longer there; put it back, or render again with --boards-dir naming its folder")
    return get_board(info["board"])
