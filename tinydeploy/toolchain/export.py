"""`tinydeploy export`: load a model (and a few windows of data for the example), render the
library (tinydeploy.codegen.library, pure) and write it like a rendered project: only into
the folder given, never over a file tinydeploy did not write there unless force, one run at
a time (tinydeploy.toolchain.project.write_project)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinydeploy.codegen.library import RECORDING_WINDOWS, ExportOptions, Recording, export, library_layout
from tinydeploy.core.boards import Board
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import Model, load_model
from tinydeploy.toolchain.project import write_project

DIGITS = "digits"  # the built-in demo data (tinydeploy.core.data.BUILTIN)


def _digits_side(model: Model) -> int | None:
    """The digits' image side when the model takes (S, S, 1) images, else None."""
    shape = list(model.input_tensors[0].shape[1:])
    return shape[0] if len(shape) == 3 and shape[0] == shape[1] and shape[2] == 1 else None


def recording(model: Model, source: str | None, window: int | None = None, seed: int = 0) -> Recording | None:
    """A few held-out windows for the example: the data's test set, else its validation
    windows; the built-in digits when no data is given and the model takes digit images;
    None (the example gets a window of zeros) otherwise.

    Raises:
        BadInput: unreadable data (tinydeploy.core.data.load).
    """
    from tinydeploy.core import data
    side = _digits_side(model)
    if source is None:
        if side is None:
            return None
        source = DIGITS
    dataset = data.load(source, image_size=side if source == DIGITS and side and side >= 4 else 32, seed=seed)
    if dataset.x_test is not None:
        x, y, part = dataset.x_test, dataset.y_test, "test"
    else:
        x, y, part = dataset.x_val, dataset.y_val, "validation"
    layout = library_layout(model, window)
    x = np.asarray(x[:RECORDING_WINDOWS], np.float32).reshape(min(RECORDING_WINDOWS, len(x)), -1)
    if x.shape[1] != layout.size:
        raise BadInput(f"--data {source}: its samples hold {x.shape[1]} values but the model's window is "
                       f"{layout.steps} steps x {layout.channels} channels = {layout.size}")
    name = Path(source).name if source != DIGITS else "the built-in digits"
    return Recording(x, tuple(dataset.labels[int(i)] for i in y[:len(x)]), f"{name} ({part} windows)")


def create_library(model_path: str | Path, board: Board, out: str | Path, options: ExportOptions,
                   data: str | None = None, force: bool = False) -> dict:
    """Load a model, render its library and write it under out.

    Args:
        options: kind, engine, name, labels, window, hop, smoothing (recording is filled from data).
        data: windows for the example ('digits', a .npz or .csv), or None.
        force: write over files in out that tinydeploy did not generate.

    Returns:
        The summary of tinydeploy.codegen.library.export, with the files written and "library" (out).
    """
    from dataclasses import replace
    model = load_model(model_path)
    options = replace(options, recording=recording(model, data, options.window))
    files, summary = export(model, board, options)
    summary["library"] = str(out)
    summary["files"] = [str(p) for p in write_project(files, out, force)]
    return summary
