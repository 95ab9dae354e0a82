"""Where tinydeploy reads and writes. Every path an option names is checked where it enters
(checked_path). Output folders are checked once; files are written whole or not at all, never
through a symlink or outside the folder given, and never over a file tinydeploy did not write
there unless the user says --force (claim: each folder keeps a record of what tinydeploy wrote
in it). One run at a time writes into a folder (locked). read_json is the one way a JSON file
tinydeploy wrote (or a user gave) is read back."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tinydeploy.core.errors import BadInput, StepFailed

# Linux's limits, used where the file system can't be asked (os.pathconf): bytes in one name
# (NAME_MAX, ext4/xfs/btrfs/tmpfs) and in a whole path (PATH_MAX), from <linux/limits.h>.
NAME_MAX = 255
PATH_MAX = 4096
RECORD = ".tinydeploy-outputs.json"  # the files tinydeploy wrote in a folder (claim)
LOCK = ".tinydeploy.lock"  # held by the run writing into a folder, with its pid (locked)


def _shown(text: str, limit: int = 60) -> str:
    """A path for a message: a long one cut in the middle, saying how long it is."""
    half = limit // 2
    return text if len(text) <= limit else f"{text[:half]}...{text[-half:]} ({len(text)} characters)"


def _limit(path: Path, name: str, default: int) -> int:
    """The file system's limit `name` (PC_NAME_MAX, PC_PATH_MAX) where path is, asked of its
    nearest existing folder."""
    for folder in (path, *path.absolute().parents):
        try:
            return os.pathconf(folder, name)
        except (OSError, ValueError):
            continue
    return default


def checked_path(value, option: str):
    """value, when it can name a file here; every path an option names passes through it
    where it enters (the API's functions), so that no path fails later as an OSError.

    Args:
        value: a str or Path, or None (no path given: returned as it is).
        option: the option's name for messages (--out, model, ...).

    Returns:
        value, unchanged.

    Raises:
        BadInput: empty, not text, holding a NUL, not encodable as a file name, a name longer
            than the file system allows (NAME_MAX bytes) or a path longer than PATH_MAX bytes.
    """
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise BadInput(f"{option} {value!r}: not a path")
    text = os.fsdecode(os.fspath(value))
    if not text.strip():
        raise BadInput(f"{option} is empty: give a path")
    if "\0" in text:
        raise BadInput(f"{option} {_shown(text)!r}: a path can't hold a NUL character")
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError as exc:
        raise BadInput(f"{option} {_shown(text)!r}: not a file name this system can encode ({exc.reason})") from exc
    name_max = _limit(Path(text), "PC_NAME_MAX", NAME_MAX)
    longest = max(raw.split(b"/"), key=len)
    if len(longest) > name_max:
        name = os.fsdecode(longest)
        raise BadInput(f"{option} {_shown(text)}: the name '{name[:20]}...' in it is {len(longest)} bytes; the file "
                       f"system allows at most {name_max} bytes in one name (NAME_MAX)")
    path_max = _limit(Path(text), "PC_PATH_MAX", PATH_MAX)
    if len(raw) >= path_max:
        raise BadInput(f"{option} {_shown(text)}: the path is {len(raw)} bytes; the system allows paths shorter "
                       f"than {path_max} bytes (PATH_MAX)")
    return value


def output_folder(value: str | Path, option: str = "--out") -> Path:
    """The folder an option names, created if missing.

    Raises:
        BadInput: an empty value, a path that is a file (or runs through one), or a folder
            that can't be created (naming the value and why).
    """
    text = str(value)
    if not text.strip():
        raise BadInput(f"{option} is empty: give a folder to write into")
    checked_path(text, option)
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


def recorded(folder: Path) -> set[str]:
    """The files tinydeploy wrote in folder, as its record lists them (none without a readable record)."""
    try:
        listed = json.loads((folder / RECORD).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {name for name in listed if isinstance(name, str)} if isinstance(listed, list) else set()


def claim(folder: Path, names: Iterable[str], force: bool = False, option: str = "--out",
          ours: Callable[[Path], bool] | None = None, record: bool = True) -> None:
    """The one rule for writing into a folder a user named: never over a file tinydeploy did
    not write there, unless force. Called before a run writes anything, with every file it
    will write; the names are then recorded as tinydeploy's (RECORD), so that the next run
    may write them again.

    Args:
        folder: the output folder (output_folder).
        names: the files the run writes, relative to folder.
        force: write over files tinydeploy did not write (the user's --force).
        option: the folder's option, for messages.
        ours: another sign that a file is tinydeploy's (render's banner); else the record's.
        record: add names to the folder's record (render keeps its own manifest).

    Raises:
        BadInput: files in the way, named (unless force); a name that is a symlink or a
            folder, or that leaves folder (always).
    """
    names = sorted(set(names))
    known = recorded(folder)
    paths = {name: inside(folder, name) for name in names}
    foreign = [name for name, path in paths.items()
               if path.exists() and name not in known and not (ours is not None and ours(path))]
    if foreign and not force:
        raise BadInput(f"{folder} already has files tinydeploy did not generate: {', '.join(foreign)}; choose "
                       f"another {option}, move them away, or pass --force to overwrite them")
    if record and not set(names) <= known:
        write_atomically(folder / RECORD, json.dumps({"written_by": "tinydeploy", "files": sorted(known | set(names))},
                                                     indent=2) + "\n")


@contextmanager
def locked(folder: Path, option: str = "--out") -> Iterator[Path]:
    """Hold folder's lock (LOCK, flock) while the block runs: a second run writing into the same
    folder fails at once (StepFailed, exit 1, as a busy serial port does) naming the folder and
    the pid of the run that holds it. The lock goes when the block ends, by error or Ctrl-C too
    (the lock file is removed), and with the process whatever kills it (the kernel drops a dead
    process's flock; a lock file left behind is taken over by the next run).

    Raises:
        StepFailed: another run holds the lock.
        BadInput: the lock file can't be opened (a symlink there, a read-only folder).
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): runs are not kept apart
        yield folder
        return
    path = folder / LOCK
    while True:
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise BadInput(f"{option} {folder}: can't open its lock file {LOCK} ({exc.strerror or exc})") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode("ascii", "replace").strip()
            os.close(handle)
            raise StepFailed(f"{option} {folder} is in use by another tinydeploy run "
                             f"({f'pid {holder}' if holder.isdigit() else 'its pid not written yet'}): wait for it "
                             f"to finish, or choose another {option}") from None
        except OSError:  # a file system without flock (some network mounts): runs are not kept apart
            os.close(handle)
            yield folder
            return
        try:  # locked; but if the holder removed the file as we opened it, ours is an orphan
            current = os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle).st_ino:
            break
        os.close(handle)
    try:
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        try:
            path.unlink()  # while still locked: the next run makes a new one
        except OSError:
            pass
        os.close(handle)  # closing the file releases the lock


@contextmanager
def run_folder(value: str | Path, names: Iterable[str], force: bool = False, option: str = "--out",
               ours: Callable[[Path], bool] | None = None, record: bool = True) -> Iterator[Path]:
    """The output folder of one run: checked and created (output_folder), locked for as long as
    the run lasts (locked), and the files it will write claimed (claim).

    Yields:
        The folder, as a Path.
    """
    folder = output_folder(value, option)
    with locked(folder, option):
        claim(folder, names, force, option, ours, record)
        yield folder


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
