"""Where the shipped data folders (boards/, templates/, firmware/) are.

In a wheel they are installed inside the package (pyproject maps boards/ to
tinydeploy/board_profiles and so on); in a source checkout, including an
editable install, they are the top-level folders beside the package.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # tinydeploy/, above core/
_INSTALLED_NAMES = {"boards": "board_profiles", "templates": "templates", "firmware": "firmware"}


def shipped(folder: str) -> Path:
    """The directory of a shipped data folder: 'boards', 'templates' or 'firmware'."""
    installed = _PACKAGE / _INSTALLED_NAMES[folder]
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / folder
