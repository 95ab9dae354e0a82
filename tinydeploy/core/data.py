"""Datasets for training and evaluation.

Sources:
- ``digits``: the built-in demo, scikit-learn's bundled handwritten digits
  (1,797 8x8 images shipped inside the package: nothing is downloaded),
  resized to ``image_size``.
- ``FILE.npz`` with ``x_train``/``y_train`` and optionally ``x_val``/``y_val``.
  Samples are images ``(H, W, C)`` or sensor windows ``(T, C)``; grayscale
  images ``(H, W)`` need an extra array ``layout='image'`` in the file.
- ``FILE.csv`` of sensor windows: one window a row, a ``label`` column, and
  columns named ``CHANNEL_STEP`` (e.g. ``ax_0, ay_0, az_0, ax_1, ...``).

Inputs keep their raw values; the model learns (and folds in) any normalization.
Labels may be integers or strings; they become indices into ``labels``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tinydeploy.core.bounds import BOUNDS, check
from tinydeploy.core.errors import BadInput

BUILTIN = ("digits",)


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray  # integer class indices into labels
    x_val: np.ndarray
    y_val: np.ndarray
    labels: list[str]  # class names in output order
    name: str
    val_given: bool = False  # the source had its own validation set
    x_test: np.ndarray | None = None  # held out: evaluated once, for the chosen model only
    y_test: np.ndarray | None = None

    @property
    def all_samples(self) -> tuple[np.ndarray, np.ndarray]:
        """Every labelled sample: the validation set if one was given, else train and val together."""
        if self.val_given:
            return self.x_val, self.y_val
        return np.concatenate([self.x_train, self.x_val]), np.concatenate([self.y_train, self.y_val])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def kind(self) -> str:
        """'image' for (H, W, C) samples, 'series' for (T, C) windows."""
        return "image" if len(self.input_shape) == 3 else "series"

    def summary(self) -> dict:
        return {"name": self.name, "kind": self.kind, "input_shape": list(self.input_shape),
                "train": int(len(self.x_train)), "val": int(len(self.x_val)),
                "test": int(len(self.x_test)) if self.x_test is not None else 0, "labels": self.labels}

    def with_test(self, x, y, origin: str) -> "Dataset":
        """This dataset with a held-out test set (raw samples, labels as in the training data).

        Raises:
            BadInput: the test samples' shape or labels don't match the training data.
        """
        x, y = np.asarray(x), np.asarray(y).reshape(-1)
        problems = _check_samples(x, y, "test set", origin)
        if not problems and y.dtype.kind == "f":
            y = y.astype(np.int64)  # whole numbers stored as floats (checked above)
        if not problems and tuple(x.shape[1:]) != self.input_shape:
            problems.append(f"test samples are {tuple(x.shape[1:])}, training samples {self.input_shape}")
        unknown = sorted({str(v) for v in np.unique(y)} - set(self.labels)) if not problems else []
        if unknown:
            problems.append(f"test labels not in the training data: {', '.join(unknown[:10])} "
                            f"(training labels: {', '.join(self.labels[:20])})")
        if problems:
            raise BadInput(f"{origin}: " + "; ".join(problems))
        index = {label: i for i, label in enumerate(self.labels)}
        return replace(self, x_test=x.astype(np.float32), y_test=np.array([index[str(v)] for v in y], np.int64))


def digits(size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's digits as (size, size, 1) images with raw pixel values 0..16."""
    check("--image-size", size)
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32)
    if size != 8:
        images = np.clip(zoom(images, (1, size / 8, size / 8), order=1), 0, 16)
    return from_arrays(images[..., None], bunch.target, None, None, "digits", val_fraction, seed)


MAX_MAGNITUDE = BOUNDS["sample values"].high  # the largest input magnitude accepted (why: its bound)


def _check_samples(x: np.ndarray, y: np.ndarray, part: str, origin: str) -> list[str]:
    problems = []
    if x.ndim == 0 or y.ndim == 0:
        return [f"{part}: a single value (0-d array), not samples"]
    if len(x) == 0:
        problems.append(f"{part}: no samples")
        return problems
    if len(x) != len(y):
        problems.append(f"{part}: {len(x)} samples but {len(y)} labels")
    if x.ndim - 1 not in (2, 3):
        problems.append(f"{part}: samples of shape {tuple(x.shape[1:])} are not supported; "
                        "give images (H, W, C) or (H, W), or sensor windows (T, C) or (T) in a .npz")
    elif 0 in x.shape[1:]:
        problems.append(f"{part}: samples of shape {tuple(x.shape[1:])} hold no values")
    if np.issubdtype(x.dtype, np.complexfloating):
        problems.append(f"{part}: values are complex numbers ({x.dtype}); give real values "
                        "(e.g. magnitudes, or real and imaginary parts as channels)")
    elif not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        problems.append(f"{part}: values must be real numbers, got {x.dtype}")
    elif not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        problems.append(f"{part}: {bad} NaN or Inf values")
    elif x.size and float(np.max(np.abs(x))) > MAX_MAGNITUDE:
        problems.append(f"{part}: values as large as {float(np.max(np.abs(x))):.3g}; tinydeploy trains in "
                        f"float32, where values beyond {MAX_MAGNITUDE:.0e} overflow once squared and the "
                        "int8 converter leaves float layers; rescale the data (e.g. to physical units)")
    problems += _check_labels(y, part)
    return problems


def _check_labels(y: np.ndarray, part: str) -> list[str]:
    """Labels are whole numbers, booleans or text; never NaN, floats with fractions or objects."""
    if y.dtype.kind in "iub":
        return []
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            return [f"{part}: {int(np.size(y) - np.count_nonzero(np.isfinite(y)))} labels are NaN or Inf"]
        if not np.all(y == np.round(y)):
            return [f"{part}: labels are fractional numbers ({y[y != np.round(y)][:3].tolist()}); "
                    "give class numbers or names"]
        return []
    if y.dtype.kind == "U":
        bad = label_problem(np.unique(y).tolist())
        return [f"{part}: {bad}"] if bad else []
    return [f"{part}: labels must be class numbers or names, got {y.dtype}"]


def label_problem(labels) -> str | None:
    """Why class labels can't be used, or None: each must be one non-empty line of text, as the
    firmware prints it and as `render --labels` reads it back from a file, one a line. Checked
    where labels enter (the data, a --labels file), with this one rule.

    Returns:
        A message naming the bad labels, or None when every label is usable.
    """
    bad = [f"{i + 1} ({label!r})" for i, label in enumerate(labels)
           if not isinstance(label, str) or not label.strip() or label.splitlines() != [label]]
    if not bad:
        return None
    return (f"labels must each be one non-empty line of text; not so: label {', '.join(bad[:5])}"
            + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))


def from_arrays(x_train, y_train, x_val, y_val, name: str, val_fraction: float = 0.2,
                seed: int = 0, origin: str | None = None) -> Dataset:
    """Validate arrays and make a Dataset, splitting off a stratified validation set if none is given.

    Raises:
        BadInput: with every problem found (lengths, NaN/Inf, classes, rank, emptiness).
    """
    origin = origin or name
    x_train, y_train = np.asarray(x_train), np.asarray(y_train).reshape(-1)
    problems = _check_samples(x_train, y_train, "training set", origin)
    if x_val is not None:
        x_val, y_val = np.asarray(x_val), np.asarray(y_val).reshape(-1)
        problems += _check_samples(x_val, y_val, "validation set", origin)
        if not problems and x_val.shape[1:] != x_train.shape[1:]:
            problems.append(f"validation samples are {x_val.shape[1:]}, training samples {x_train.shape[1:]}")
    if problems:
        raise BadInput(f"{origin}: " + "; ".join(problems))
    given_val = x_val is not None
    y_train = y_train.astype(np.int64) if y_train.dtype.kind == "f" else y_train
    y_val = y_val.astype(np.int64) if y_val is not None and y_val.dtype.kind == "f" else y_val
    classes, counts = np.unique(y_train, return_counts=True)
    if len(classes) < 2:
        only = classes[0].item() if isinstance(classes[0], np.generic) else classes[0]
        raise BadInput(f"{origin}: only one class ({only!r}); a classifier needs at least 2")
    if x_val is None and counts.min() < 2:
        few = [str(c) for c, n in zip(classes, counts) if n < 2]
        raise BadInput(f"{origin}: classes with fewer than 2 samples cannot be split for validation: "
                       f"{', '.join(few)}")
    labels = [str(c) for c in classes]
    index = {label: i for i, label in enumerate(labels)}  # by name: validation labels may be of another type
    if x_val is None:
        from sklearn.model_selection import train_test_split
        # A stratified split needs one validation sample of every class at least: with many
        # classes and few samples that is more than the fraction asks for.
        val_count = min(max(int(np.ceil(len(x_train) * val_fraction)), len(classes)), len(x_train) - len(classes))
        x_train, x_val, y_train, y_val = train_test_split(
            x_train, y_train, test_size=val_count, stratify=y_train, random_state=seed)
    else:
        unknown = sorted({str(v) for v in np.unique(y_val)} - set(labels))
        if unknown:
            raise BadInput(f"{origin}: validation labels not in the training set: {', '.join(unknown)}")
    to_index = np.vectorize(lambda v: index[str(v)], otypes=[np.int64])
    return Dataset(x_train.astype(np.float32), to_index(y_train), x_val.astype(np.float32),
                   to_index(y_val), labels, name, val_given=given_val)


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first local header, or an empty archive's end record


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of a .npz file, read eagerly (numpy reads lazily, so a damaged member or an
    object array would otherwise fail later, outside this check)."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise BadInput(f"{path}: can't read it ({exc.strerror or exc})") from exc
    if magic not in ZIP_MAGIC:  # np.load would try it as a pickle, and blame "Python objects"
        raise BadInput(f"{path}: not an .npz file: an .npz is a zip archive of arrays (np.savez), and this "
                       f"file starts with {magic!r}, not a zip header")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except Exception as exc:  # zip, format and pickle errors all mean: not a usable .npz
        reason = "it holds Python objects, which are not loaded (give numeric arrays)" \
            if "allow_pickle" in str(exc) else str(exc)
        raise BadInput(f"{path}: not a readable .npz file ({reason})") from exc


def _unpaired(arrays: dict) -> list[str]:
    """The arrays missing from a half-given set (x_val without y_val...): half a set would
    otherwise be silently ignored."""
    return [b for part in ("train", "val", "test") for a, b in ((f"x_{part}", f"y_{part}"), (f"y_{part}", f"x_{part}"))
            if a in arrays and b not in arrays]


def _load_npz(path: Path, val_fraction: float, seed: int) -> Dataset:
    arrays = _read_npz(path)
    missing = list(dict.fromkeys([k for k in ("x_train", "y_train") if k not in arrays] + _unpaired(arrays)))
    if missing:
        raise BadInput(f"{path}: missing arrays {', '.join(missing)}; it has {', '.join(arrays) or 'none'}")
    has_val = "x_val" in arrays and "y_val" in arrays
    x_train = arrays["x_train"]
    x_val = arrays.get("x_val") if has_val else None
    x_test = arrays.get("x_test") if "x_test" in arrays and "y_test" in arrays else None
    # (N, H, W) grayscale images become (N, H, W, 1); (N, T, C) stays a series, and (N, T), a
    # one-channel series (as univariate recordings are usually stored), becomes (N, T, 1).
    layout = arrays.get("layout", np.array("series"))
    channel = x_train.ndim == 2 or (x_train.ndim == 3 and layout.size == 1 and str(layout.reshape(-1)[0]) == "image")
    if channel:
        ndim = x_train.ndim
        x_train = x_train[..., None]
        x_val = x_val[..., None] if x_val is not None and x_val.ndim == ndim else x_val
        x_test = x_test[..., None] if x_test is not None and x_test.ndim == ndim else x_test
    dataset = from_arrays(x_train, arrays["y_train"], x_val, arrays.get("y_val") if has_val else None,
                          path.stem, val_fraction, seed, origin=str(path))
    if x_test is not None:
        dataset = dataset.with_test(x_test, arrays["y_test"], f"{path} (x_test/y_test)")
    return dataset


_COLUMN = re.compile(r"^(.+)_(\d+)$")


def _load_csv(path: Path, val_fraction: float, seed: int) -> Dataset:
    x, y = _read_csv(path)
    return from_arrays(x, y, None, None, path.stem, val_fraction, seed, origin=str(path))


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Windows and labels of a CSV file: a 'label' column and CHANNEL_STEP feature columns."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise BadInput(f"{path}: not a CSV file ({exc})") from exc
    if not rows or not rows[0]:
        raise BadInput(f"{path}: the file is empty")
    header, body = rows[0], [(n, r) for n, r in enumerate(rows[1:], start=2) if r]
    if "label" not in header:
        raise BadInput(f"{path}: no 'label' column; columns are {', '.join(header[:8])}")
    label_at = header.index("label")
    features = [(i, _COLUMN.match(h)) for i, h in enumerate(header) if i != label_at]
    bad = [header[i] for i, m in features if m is None]
    if bad:
        raise BadInput(f"{path}: feature columns must be named CHANNEL_STEP (e.g. ax_0): {', '.join(bad[:5])}")
    channels = list(dict.fromkeys(m.group(1) for _, m in features))
    steps = sorted({int(m.group(2)) for _, m in features})
    if len(features) != len(channels) * len(steps) or len({(m.group(1), int(m.group(2))) for _, m in features}) \
            != len(features):
        raise BadInput(f"{path}: every channel needs one column for every step ({len(channels)} channels, "
                       f"{len(steps)} steps, {len(features)} columns)")
    if not body:
        raise BadInput(f"{path}: no data rows")
    ragged = [n for n, row in body if len(row) != len(header)]
    if ragged:
        raise BadInput(f"{path}: rows {', '.join(map(str, ragged[:5]))} have a cell count other than the "
                       f"header's {len(header)}")
    unlabelled = [n for n, row in body if not row[label_at].strip()]
    if unlabelled:
        raise BadInput(f"{path}: rows {', '.join(map(str, unlabelled[:5]))} have no label")
    order = {(m.group(1), int(m.group(2))): i for i, m in features}
    try:
        x = np.array([[[float(row[order[(c, t)]]) for c in channels] for t in steps] for _, row in body],
                     dtype=np.float32)
    except ValueError as exc:
        raise BadInput(f"{path}: a row has a missing or non-numeric value ({exc})") from exc
    y = np.array([row[label_at].strip() for _, row in body])
    if all(re.fullmatch(r"-?[0-9]{1,18}", v) for v in y):  # class numbers (ASCII digits, within int64)
        y = y.astype(np.int64)
    return x, y


def add_test(dataset: Dataset, source: str) -> Dataset:
    """The dataset with a test set from another source (`--test`): that source's x_test/y_test
    if it has them, else every sample it holds.

    Raises:
        BadInput: unreadable source, or samples or labels that don't match the training data.
    """
    path = Path(source)
    if path.suffix not in (".npz", ".csv") or not path.is_file() or path.stat().st_size == 0:
        raise BadInput(f"--test {source}: give a .npz (x_test/y_test, or x_train/y_train) or .csv file "
                       "of raw labelled samples that exists and is not empty")
    if path.suffix == ".csv":
        x, y = _read_csv(path)
        return dataset.with_test(x, y, source)
    arrays = _read_npz(path)
    if _unpaired(arrays):
        raise BadInput(f"{path}: missing arrays {', '.join(_unpaired(arrays))}; it has {', '.join(arrays)}")
    x_key, y_key = ("x_test", "y_test") if "x_test" in arrays and "y_test" in arrays else ("x_train", "y_train")
    if x_key not in arrays or y_key not in arrays:
        raise BadInput(f"{path}: no x_test/y_test or x_train/y_train; it has {', '.join(arrays) or 'nothing'}")
    x = arrays[x_key]
    if x.ndim == len(dataset.input_shape) and dataset.kind == "image":
        x = x[..., None]  # (N, H, W) grayscale
    return dataset.with_test(x, arrays[y_key], source)


def load(source: str, image_size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Load a dataset by name or path.

    Args:
        source: 'digits', or a path to a .npz or .csv file.
        image_size: side of the built-in digits images.
        val_fraction: validation share when the data has no validation set.
        seed: seed of that split.

    Raises:
        BadInput: unknown source, unreadable file, invalid data, or an image size or seed out of bounds.
    """
    check("--image-size", image_size)
    check("--seed", seed)
    if source == "digits":
        return digits(image_size, val_fraction, seed)
    path = Path(source)
    if path.suffix not in (".npz", ".csv"):
        raise BadInput(f"unknown data '{source}': give a built-in dataset ({', '.join(BUILTIN)}) "
                       "or a .npz or .csv file")
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise BadInput(f"{path}: the file is empty")
    return _load_npz(path, val_fraction, seed) if path.suffix == ".npz" else _load_csv(path, val_fraction, seed)
