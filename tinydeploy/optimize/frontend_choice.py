"""Which signal front end (tinydeploy.core.frontend) goes before the network: optimize's first
decision, made per dataset, or pinned or disabled with --front-end.

Candidates are scaled to the window [steps, channels] (``candidates``): always "none" (the
network takes the raw window); per-window normalisation keeping the log-scale; for long
windows, average decimation to about DECIMATED_STEPS steps, then normalisation; framed
spectra in linear bands (one with short frames, one with long, and for long windows a cheap
one: decimated, frames apart); pooled spectra (each frame's log band energies less their mean,
averaged over frames spread across the window: a few dozen features that do not depend on where
in the window an event falls, with as many frames as the budget allows: ``thinned``); and
per-channel statistics over a few segments when the window has several channels. Images keep
"none".

Each candidate is scored cheaply and honestly (``score``): its features of at most
PROBE_WINDOWS training windows (stratified; the validation and test windows are never
touched, except that a set with a single training window in some class is probed on its
training and validation windows together) go to two fast classifiers, ridge regression (one-hot targets) and 1-NN on standardised features,
in stratified k-fold cross-validation; the score is the better of the two mean fold
accuracies. The network that follows usually does at least as well as these. Each
candidate's device cost (tinydeploy.costs.frontend) must leave the network at least
half of the latency and arena budgets, or, when it gives at most SMALL_FEATURES values a window,
SMALL_RESERVE of the latency budget (a network on a few dozen features costs little); the rest
goes to the network (``network_targets``).

The best-scoring candidate that fits is chosen, but it must beat "none" by MIN_GAIN:
otherwise the raw window is kept (short windows, images, sets too small to tell). Every
candidate's scores and costs go into the report.

``parse_spec`` reads --front-end SPEC: blocks separated by commas, each ``name`` or
``name:params``, where a parameter is ``key=value`` or a bare value; a ``key=value`` token
after a comma continues the block before it, so
``normalize:log,decimate:4`` and ``normalize,spectrum:frame=256,hop=128,bands=20`` read as
expected. A JSON file (Frontend.to_dict(), {"blocks": [...]} or a list of blocks) works too.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from tinydeploy.core.boards import Board
from tinydeploy.core.data import Dataset
from tinydeploy.core.errors import BadInput
from tinydeploy.core.frontend import (BLOCKS, SPACINGS, STATS, Decimate, Frontend, Normalize, Spectrum, Stats,
                                      block_from_dict, input_scale_for)
from tinydeploy.core.targets import Targets
from tinydeploy.costs.frontend import frontend_cost, latency_ms_estimate, ram_bytes

AUTO, NONE = "auto", "none"
# Windows at most this long are taken as they are by the network; longer ones get a decimating
# candidate that brings them to about this many steps.
DECIMATED_STEPS = 128
# Shortest window a spectrum candidate is tried on (a 16-point frame, four of them).
SPECTRUM_MIN_STEPS = 64
# Windows twice this long also get a cheap spectrum: decimated to about this many steps, then
# 32-point frames that don't overlap (1,500 steps: about 0.5 ms on an ESP32-S3, against 2.8 ms
# for 64-point frames every 32 steps of the whole window; tinydeploy.costs.frontend).
CHEAP_SPECTRUM_STEPS = 256
# The probe: at most this many training windows, k-fold with at most this many folds.
PROBE_WINDOWS = 800
PROBE_FOLDS = 4
RIDGE_SHARE = 0.1  # the ridge penalty, as a share of the mean squared (standardised) feature-vector norm
# A front end must beat the raw window's score by this much to be chosen: closer figures are
# within what a thousand windows' cross-validation can tell apart.
MIN_GAIN = 0.02
# A front end may take at most this share of the latency and arena budgets.
BUDGET_SHARE = 0.5
# ... or, when its features are at most SMALL_FEATURES values a window, all but SMALL_RESERVE of
# the latency budget. On an ESP32-S3 (bench/public_sets.py, synth-2000x52), the network chosen
# behind a pooled spectrum's 32 features, a nearest-prototype classifier of 52 classes, was
# estimated at 0.050 ms by tinydeploy.costs.figures: a third of the 0.15 ms a 1 ms budget leaves.
SMALL_FEATURES = 256
SMALL_RESERVE = 0.15
# Frame lengths of the pooled spectra tried (those at most a quarter of the window).
POOLED_FRAMES = (32, 64, 128)

# Short names --front-end accepts for parameters, and the parameter a bare value sets.
ALIASES = {"log": "log_scale", "frame": "frame_length", "rate": "sample_rate", "low": "low_hz", "high": "high_hz",
           "mfcc": "cepstra", "segs": "segments"}
BARE = {"normalize": "log_scale", "decimate": "factor", "spectrum": "frame_length", "stats": "stats"}
CHAIN_OPTIONS = ("flatten",)
SHOWN = ("factor", "frame_length", "hop", "bands")  # to_spec writes these even at their defaults


def accepted_text() -> str:
    """The blocks and parameters --front-end accepts, in one line."""
    parts = []
    for kind, cls in BLOCKS.items():
        params = [f.name for f in fields(cls)]
        short = {v: k for k, v in ALIASES.items()}
        parts.append(f"{kind} ({', '.join(p + (f' or {short[p]}' if p in short else '') for p in params)})")
    return (f"blocks and parameters accepted: {'; '.join(parts)}; spacing is {' or '.join(SPACINGS)}, stats are "
            f"from {'+'.join(STATS)}; or 'auto', 'none', or a JSON file of Frontend.to_dict()")


def _value(text: str):
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _block(kind: str, params: list[str], spec: str):
    cls = BLOCKS[kind]
    known = {f.name for f in fields(cls)}
    values = {}
    for token in params:
        if "=" in token:
            key, _, raw = token.partition("=")
            key = ALIASES.get(key.strip(), key.strip())
            value = _value(raw.strip())
        else:
            key, value = BARE[kind], _value(token.strip())
            if key == "log_scale" and token.strip() in ("log", "log_scale"):
                value = True
        if key not in known:
            raise BadInput(f"--front-end {spec!r}: {kind} has no parameter {key!r}; {accepted_text()}")
        if key == "stats":
            value = tuple(str(value).split("+"))
        values[key] = value
    try:
        return cls(**values)
    except (BadInput, TypeError) as exc:
        raise BadInput(f"--front-end {spec!r}: {exc}; {accepted_text()}") from exc


def parse_spec(spec: str) -> Frontend | None:
    """The front end --front-end SPEC names, with input_scale 1 (fitted to the data later), or
    None for 'none'; 'auto' is not a spec (choose() handles it).

    Args:
        spec: a compact string (module docstring) or a JSON file's path.
    Raises:
        BadInput: naming the bad part, with the blocks and parameters accepted.
    """
    text = str(spec).strip()
    if text.lower() == NONE:
        return None
    if text.lower().endswith(".json") or Path(text).is_file():
        return _from_json(Path(text))
    if not text:
        raise BadInput(f"--front-end is empty; {accepted_text()}")
    groups: list[tuple[str, list[str]]] = []
    flatten = False
    for token in (t.strip() for t in text.split(",")):
        name, colon, rest = token.partition(":")
        name = name.strip().lower()
        if name in BLOCKS:
            groups.append((name, [p for p in rest.split(";") if p.strip()] if colon else []))
        elif token in CHAIN_OPTIONS:
            flatten = True
        elif "=" in token and groups and not colon:
            groups[-1][1].append(token)
        else:
            raise BadInput(f"--front-end {text!r}: {token!r} is not a block or a key=value parameter; "
                           f"{accepted_text()}")
    blocks = tuple(_block(kind, params, text) for kind, params in groups)
    try:
        return Frontend(blocks, flatten=flatten)
    except BadInput as exc:
        raise BadInput(f"--front-end {text!r}: {exc}; {accepted_text()}") from exc


def _from_json(path: Path) -> Frontend:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"--front-end {path}: can't read it ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise BadInput(f"--front-end {path}: not JSON ({exc})") from exc
    if isinstance(data, list):
        data = {"blocks": data}
    if not isinstance(data, dict) or not isinstance(data.get("blocks", []), list):
        raise BadInput(f"--front-end {path}: give Frontend.to_dict(), {{\"blocks\": [...]}} or a list of blocks; "
                       f"{accepted_text()}")
    try:
        if "format" in data:
            return replace(Frontend.from_dict(data), output=None)
        return Frontend(tuple(block_from_dict(b) for b in data["blocks"]), input_scale=data.get("input_scale", 1.0),
                        flatten=data.get("flatten", False))
    except (BadInput, TypeError) as exc:
        raise BadInput(f"--front-end {path}: {exc}; {accepted_text()}") from exc


def to_spec(front: Frontend | None) -> str:
    """The compact --front-end string of a front end (parameters at their defaults left out,
    short names where there are), which parse_spec reads back."""
    if front is None or not front.blocks and not front.flatten:
        return NONE
    short = {v: k for k, v in ALIASES.items()}
    parts = []
    for block in front.blocks:
        defaults = type(block)()
        params = []
        for key, value in block.params().items():
            if value == getattr(defaults, key) and key not in SHOWN:
                continue
            if key == "log_scale":
                params.append("log")
            elif key == "factor":
                params.append(str(value))
            else:
                shown = "+".join(value) if isinstance(value, tuple) else str(value).lower() if isinstance(value, bool) \
                    else f"{value:g}" if isinstance(value, float) else value
                params.append(f"{short.get(key, key)}={shown}")
        parts.append(block.kind + (":" + ",".join(params) if params else ""))
    return ",".join(parts + (["flatten"] if front.flatten else []))


def _pow2_at_most(value: float) -> int:
    return 1 << max(0, int(np.floor(np.log2(max(value, 1)))))


def candidates(shape: tuple[int, ...], kind: str) -> list[tuple[str, Frontend | None]]:
    """(name, front end) pairs to compare for windows of this shape ([steps, channels]), input
    scale 1 (fitted to the data later); "none" first."""
    out: list[tuple[str, Frontend | None]] = [("none", None)]
    if kind != "series":
        return out
    steps, channels = shape
    if steps >= 8:
        out.append(("normalize", Frontend((Normalize(log_scale=True),))))
    if steps > 2 * DECIMATED_STEPS:
        factor = max(2, int(round(steps / DECIMATED_STEPS)))
        out.append((f"decimate {factor} + normalize", Frontend((Decimate(factor), Normalize(log_scale=True)))))
    if steps >= SPECTRUM_MIN_STEPS:
        frames = sorted({min(512, max(16, _pow2_at_most(steps / 16))), min(1024, max(16, _pow2_at_most(steps / 4)))})
        for frame in frames:
            bands = min(frame // 2, 16 if frame <= 64 else 32)
            out.append((f"normalize + spectrum {frame}/{frame // 2}, {bands} bands",
                        Frontend((Normalize(log_scale=True), Spectrum(frame, frame // 2, bands)))))
    if steps >= 2 * CHEAP_SPECTRUM_STEPS:  # a spectrum that fits a tight budget: decimated, frames apart
        factor = steps // CHEAP_SPECTRUM_STEPS
        out.append((f"decimate {factor} + normalize + spectrum 32/32, 16 bands",
                    Frontend((Decimate(factor), Normalize(log_scale=True), Spectrum(32, 32, 16)))))
    if steps >= SPECTRUM_MIN_STEPS:  # pooled: thinned() spreads as many frames as fit over the window
        for frame in (f for f in POOLED_FRAMES if 4 * f <= steps):
            bands = min(frame // 2, 32)
            out.append((f"pooled relative spectrum {frame}, {bands} bands",
                        Frontend((Spectrum(frame, frame // 2, bands, relative=True, pool=True),))))
        frame = max((f for f in POOLED_FRAMES if 4 * f <= steps), default=0)
        if frame:
            out.append((f"pooled spectrum {frame}, {min(frame // 2, 32)} bands",
                        Frontend((Spectrum(frame, frame // 2, min(frame // 2, 32), pool=True),))))
    if channels >= 2 and steps >= 4:
        segments = 4 if steps >= 64 else 1
        out.append((f"stats over {segments} segment{'s' * (segments > 1)}", Frontend((Stats(segments=segments),))))
    return out


def fitted(front: Frontend, data: Dataset) -> Frontend:
    """The front end with its input scale fitted to the training and validation windows
    (their largest magnitude is int16's full scale), unless one was given."""
    if front.input_scale != 1.0:
        return front
    return replace(front, input_scale=input_scale_for(np.concatenate([data.x_train, data.x_val])))


def features(front: Frontend | None, x: np.ndarray) -> np.ndarray:
    """What the network takes: the front end's float features, 2-D per window ([rows, cols];
    flattened features as [size, 1]), or the windows themselves."""
    if front is None:
        return np.asarray(x, np.float32)
    out = front.features(x)
    return out.reshape(len(out), -1, 1) if out.ndim == 2 else out


def feature_dataset(front: Frontend | None, data: Dataset) -> Dataset:
    """The dataset the stages train and measure on: the features of its training and validation
    windows (the test windows are left out: they are judged on raw windows through the model)."""
    if front is None:
        return data
    return replace(data, x_train=features(front, data.x_train), x_val=features(front, data.x_val),
                   x_test=None, y_test=None)


def _probe_subset(y: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of at most limit windows, stratified by class."""
    if len(y) <= limit:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        take = max(1, int(round(limit * len(members) / len(y))))
        keep.extend(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.array(keep))


def _folds(y: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Stratified folds, or None when a class has a single window (nothing to hold out)."""
    present = np.bincount(y)
    smallest = int(present[present > 0].min()) if present.any() else 0
    if smallest < 2:
        return None
    from sklearn.model_selection import StratifiedKFold
    k = min(PROBE_FOLDS, smallest)
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def ridge_predict(a: np.ndarray, y: np.ndarray, b: np.ndarray, n_classes: int) -> np.ndarray:
    """Labels of b from ridge regression on one-hot targets fitted to (a, y), features
    standardised; the penalty is RIDGE_SHARE of the mean squared row norm (so it scales with the
    feature count), solved in whichever of the primal and dual forms is smaller."""
    targets = np.eye(n_classes)[y] * 2 - 1
    n, d = a.shape
    alpha = RIDGE_SHARE * float((a * a).sum()) / max(n, 1)
    if d <= n:
        weights = np.linalg.solve(a.T @ a + alpha * np.eye(d), a.T @ targets)
        return (b @ weights).argmax(axis=1)
    dual = np.linalg.solve(a @ a.T + alpha * np.eye(n), targets)
    return ((b @ a.T) @ dual).argmax(axis=1)


def _fold_scores(flat: np.ndarray, y: np.ndarray, folds) -> tuple[float, float]:
    """Mean fold accuracy of ridge regression and of 1-NN on standardised features."""
    from tinydeploy.optimize.yardstick import nearest_labels
    n_classes = int(y.max()) + 1
    ridge, nearest = [], []
    for train, test in folds:
        mean = flat[train].mean(axis=0)
        spread = flat[train].std(axis=0)
        spread[spread == 0] = 1.0
        a, b = (flat[train] - mean) / spread, (flat[test] - mean) / spread
        ridge.append(float((ridge_predict(a, y[train], b, n_classes) == y[test]).mean()))
        nearest.append(float((nearest_labels(a, y[train], b) == y[test]).mean()))
    return float(np.mean(ridge)), float(np.mean(nearest))


@dataclass
class Scored:
    """One candidate: its front end, its probe scores and its device cost."""
    name: str
    front: Frontend | None
    spec: str
    feature_shape: list[int]
    window: list[int] = field(default_factory=list)  # the raw window [steps, channels]
    ridge: float | None = None
    nearest: float | None = None
    latency_ms: float = 0.0
    ram_bytes: int = 0
    flash_bytes_estimate: int = 0
    operations: int = 0
    fits: bool = True
    note: str = ""
    seconds: float = 0.0

    @property
    def score(self) -> float | None:
        scores = [s for s in (self.ridge, self.nearest) if s is not None]
        return max(scores) if scores else None

    def to_dict(self) -> dict:
        return {"name": self.name, "spec": self.spec, "frontend": None if self.front is None else self.front.to_dict(),
                "features": self.feature_shape,
                "score": None if self.score is None else round(self.score, 4),
                "ridge_cv": None if self.ridge is None else round(self.ridge, 4),
                "one_nn_cv": None if self.nearest is None else round(self.nearest, 4),
                "latency_ms_estimate": round(self.latency_ms, 4), "ram_bytes": self.ram_bytes,
                "flash_bytes_estimate": self.flash_bytes_estimate, "operations": self.operations,
                "fits": self.fits, "note": self.note, "seconds": round(self.seconds, 2)}


@dataclass
class Choice:
    """The front end the run uses (None: the raw window), how it was decided, and every candidate."""
    front: Frontend | None
    how: str  # "auto", "pinned" or "disabled"
    window: list[int]
    candidates: list[Scored] = field(default_factory=list)
    reason: str = ""
    probe: dict = field(default_factory=dict)

    @property
    def chosen(self) -> Scored | None:
        return next((c for c in self.candidates if c.spec == to_spec(self.front)), None)

    def network_targets(self, targets: Targets, board: Board) -> Targets:
        """The budgets left for the network: the latency and arena budgets less the front end's cost."""
        if self.front is None:
            return targets
        cost = frontend_cost(self.front, tuple(self.window))
        latency = latency_ms_estimate(cost, board.cpu_mhz)
        ram_kb = ram_bytes(cost) / 1024
        if latency >= targets.max_latency_ms or ram_kb >= targets.max_arena_kb:
            raise BadInput(f"front end {to_spec(self.front)!r} alone takes ~{latency:.3g} ms and {ram_kb:.1f} KB of "
                           f"RAM on {board.name}, leaving the network nothing of --max-latency-ms "
                           f"{targets.max_latency_ms:g} and --max-arena-kb {targets.max_arena_kb:g}: raise them, or "
                           "choose a cheaper front end (a larger decimation, fewer frames)")
        return replace(targets, max_latency_ms=round(targets.max_latency_ms - latency, 4),
                       max_arena_kb=round(targets.max_arena_kb - ram_kb, 3))

    def fingerprint(self) -> dict:
        """What the stages depend on: the front end (a resumed run must use the same)."""
        return {"front_end": None if self.front is None else self.front.to_dict()}

    def to_dict(self, targets: Targets | None = None, board: Board | None = None) -> dict:
        out = {"chosen": None if self.front is None else self.front.to_dict(), "spec": to_spec(self.front),
               "describe": "none: the network takes the raw window" if self.front is None else self.front.describe(),
               "how": self.how, "reason": self.reason, "window": self.window, "probe": self.probe,
               "candidates": [c.to_dict() for c in self.candidates]}
        if self.front is not None:
            cost = frontend_cost(self.front, tuple(self.window))
            out["features"] = list(self.front.output_shape(tuple(self.window)))
            out["cost"] = {"scratch_bytes": cost.scratch_bytes, "ram_bytes": ram_bytes(cost),
                           "flash_bytes_estimate": cost.flash_bytes_estimate, "operations": cost.operations,
                           "describe": cost.describe()}
            if board is not None:
                out["cost"]["latency_ms_estimate"] = round(latency_ms_estimate(cost, board.cpu_mhz), 4)
                out["cost"]["latency_basis"] = (f"estimate: {cost.operations:,} integer operations at "
                                                f"{board.cpu_mhz:g} MHz (tinydeploy.costs.frontend)")
            if targets is not None and board is not None:
                left = self.network_targets(targets, board)
                out["network_targets"] = {"max_latency_ms": left.max_latency_ms, "max_arena_kb": left.max_arena_kb}
        return out


def latency_share(front: Frontend, window) -> float:
    """The share of the latency budget a front end may take on windows of this shape."""
    return 1.0 - SMALL_RESERVE if int(np.prod(front.output_shape(tuple(window)))) <= SMALL_FEATURES else BUDGET_SHARE


def thinned(front: Frontend, window, targets: Targets, board: Board) -> Frontend:
    """A pooled spectrum with as many frames as its latency share allows, spread evenly over
    the window (its features do not depend on the frame count); any other front end as it is."""
    last = front.blocks[-1] if front.blocks else None
    if not isinstance(last, Spectrum) or not last.pool or len(front.blocks) > 1:
        return front
    steps, frame = int(window[0]), last.frame_length
    limit = latency_share(front, window) * targets.max_latency_ms

    def with_frames(count: int) -> Frontend:
        hop = steps - frame + 1 if count <= 1 else max(1, (steps - frame) // (count - 1))
        return replace(front, blocks=(replace(last, hop=min(hop, 65535)),))

    def fits(count: int) -> bool:
        return latency_ms_estimate(frontend_cost(with_frames(count), tuple(window)), board.cpu_mhz) <= limit

    low, high = 1, 1 + (steps - frame) // max(1, frame // 2)  # at most half-overlapping frames
    if fits(high):
        return with_frames(high)
    while high - low > 1:  # fits(low) or low == 1
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return with_frames(low)


def _cost(scored: Scored, targets: Targets, board: Board) -> None:
    if scored.front is None:
        return
    cost = frontend_cost(scored.front, tuple(scored.window))
    scored.latency_ms = latency_ms_estimate(cost, board.cpu_mhz)
    scored.ram_bytes = ram_bytes(cost)
    scored.flash_bytes_estimate = cost.flash_bytes_estimate
    scored.operations = cost.operations
    over = []
    share = latency_share(scored.front, scored.window)
    if scored.latency_ms > share * targets.max_latency_ms:
        over.append(f"~{scored.latency_ms:.3g} ms is over {share:.0%} of --max-latency-ms "
                    f"{targets.max_latency_ms:g}")
    if scored.ram_bytes > BUDGET_SHARE * targets.max_arena_kb * 1024:
        over.append(f"{scored.ram_bytes:,} B of RAM is over {BUDGET_SHARE:.0%} of --max-arena-kb "
                    f"{targets.max_arena_kb:g}")
    if over:
        scored.fits = False
        scored.note = "does not fit: " + "; ".join(over)


def choose(data: Dataset, spec: str | Path | None, targets: Targets, board: Board, seed: int = 0,
           progress=None) -> Choice:
    """The front end for a run.

    Args:
        data: the raw dataset (only its training windows are probed).
        spec: 'auto' (or None), 'none', or a pinned SPEC (parse_spec).
        targets: the run's budgets (a candidate may take at most BUDGET_SHARE of them).
        board: the board (its clock times the front end).
        seed: the probe's subset and folds.
        progress: optional callback, ("note", {"text": ...}).

    Returns:
        The Choice.
    Raises:
        BadInput: a bad spec, or a pinned front end that does not fit the window or the budgets.
    """
    window = list(data.input_shape)
    text = AUTO if spec is None else str(spec).strip()
    if text.lower() == NONE:
        return Choice(None, "disabled", window, reason="--front-end none: the network takes the raw window")
    if text.lower() != AUTO:
        front = parse_spec(text)
        if front is not None and data.kind != "series":
            raise BadInput(f"--front-end {text!r}: front ends take sensor windows [steps, channels]; this data is "
                           f"images {tuple(data.input_shape)}: use --front-end none or auto")
        if front is not None:
            try:
                front.output_shape(tuple(window))
            except BadInput as exc:
                raise BadInput(f"--front-end {text!r} on windows of {window[0]} steps x {window[1]} channels: "
                               f"{exc}") from exc
            front = fitted(front, data)
        pinned = Scored("pinned", front, to_spec(front),
                        list(front.output_shape(tuple(window))) if front is not None else window, window)
        _cost(pinned, targets, board)
        choice = Choice(front, "pinned", window, [pinned], reason=f"--front-end {text}")
        choice.network_targets(targets, board)  # refuses one that leaves the network nothing
        return choice
    return _auto(data, targets, board, seed, progress)


def _auto(data: Dataset, targets: Targets, board: Board, seed: int, progress) -> Choice:
    window = list(data.input_shape)
    pool = candidates(tuple(window), data.kind)
    if len(pool) == 1:
        return Choice(None, "auto", window, [Scored("none", None, NONE, window)],
                      reason="images take no front end: the network takes them as they are"
                      if data.kind != "series" else "no front end fits windows this short")
    x_all, y_all, on = data.x_train, np.asarray(data.y_train), "training windows only"
    present = np.bincount(y_all)
    if present[present > 0].min(initial=2) < 2 and data.x_val is not None and len(data.x_val):
        # A class has a single training window (a set of two or three windows a class, split):
        # nothing to hold out, so the probe folds every labelled window, as the stages rank
        # small sets (training.cv_splits); the test windows are still never touched.
        x_all = np.concatenate([data.x_train, data.x_val])
        y_all = np.concatenate([y_all, np.asarray(data.y_val)])
        on = "training and validation windows (a class has a single training window)"
    subset = _probe_subset(y_all, PROBE_WINDOWS, seed)
    x, y = x_all[subset], y_all[subset]
    folds = _folds(y, seed)
    probe = {"windows": int(len(subset)), "of": int(len(y_all)), "on": on,
             "folds": 0 if folds is None else len(folds),
             "classifiers": "ridge regression on one-hot targets and 1-NN, on standardised features",
             "min_gain": MIN_GAIN, "budget_share": BUDGET_SHARE, "small_features": SMALL_FEATURES,
             "small_features_latency_share": round(1.0 - SMALL_RESERVE, 3)}
    scored: list[Scored] = []
    for name, front in pool:
        started = time.perf_counter()
        front = fitted(front, data) if front is not None else None
        try:
            shape = list(front.output_shape(tuple(window))) if front is not None else window
        except BadInput:
            continue  # a block that needs a longer window: not a candidate here
        if front is not None:
            front = thinned(front, window, targets, board)
            name = name.replace("pooled", f"pooled ({front.blocks[-1].frames_of(window[0])} frames)", 1) \
                if name.startswith("pooled") else name
        item = Scored(name, front, to_spec(front), shape, window)
        _cost(item, targets, board)
        if folds is not None and item.fits:
            flat = features(front, x).reshape(len(x), -1).astype(np.float64)
            item.ridge, item.nearest = _fold_scores(flat, y, folds)
        elif folds is None:
            item.note = item.note or "not scored: a class has a single training window"
        item.seconds = time.perf_counter() - started
        scored.append(item)
        if progress:
            progress("note", {"text": f"front end {name}: " + (f"cross-validated {item.score:.3f}" if item.score
                                                                is not None else item.note)})
    none = scored[0]
    if folds is None:
        return Choice(None, "auto", window, scored, reason="too few training windows per class to compare front "
                                                             "ends: the raw window is kept", probe=probe)
    eligible = [c for c in scored[1:] if c.fits and c.score is not None]
    best = max(eligible, key=lambda c: (c.score, -c.operations), default=None)
    if best is None or best.score < none.score + MIN_GAIN:
        reason = (f"no front end scored {MIN_GAIN} above the raw window's {none.score:.3f}"
                  + (f" (best: {best.name}, {best.score:.3f})" if best else "") + ": the raw window is kept")
        return Choice(None, "auto", window, scored, reason=reason, probe=probe)
    which = "training" if probe["on"].startswith("training windows") else "labelled"
    reason = (f"{best.name} scored {best.score:.3f} in cross-validation on {probe['windows']} {which} windows, "
              f"against {none.score:.3f} for the raw window")
    return Choice(best.front, "auto", window, scored, reason=reason, probe=probe)
