"""The steps every optimize stage shares: training (Adam under a cosine schedule, with more
steps and augmentation for small sets), quantization-aware fine-tuning, the int8 conversion,
and measuring a model the same way for every stage (StageMetrics). Search trains its trials
with the same Trainer.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tinydeploy.core.boards import Board
from tinydeploy.core.bounds import check
from tinydeploy.core.data import Dataset
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import parse_model
from tinydeploy.core.targets import TargetResult, Targets
from tinydeploy.costs import counts
from tinydeploy.optimize import architectures as arch_lib
from tinydeploy.optimize import augment, engine_choice
from tinydeploy.optimize import quantization as quant
from tinydeploy.optimize.metrics import StageMetrics
from tinydeploy.runtime import _tf, tflm
from tinydeploy.runtime.evaluate import evaluate

# The stages in their order (a stage's place seeds it): a class each in
# tinydeploy.optimize.stages.STAGE_CLASSES, but final, the pipeline's choice among them.
STAGES = ("arch", "qat", "mixed", "progressive", "prune", "distill", "seek", "nearest", "final")

# Epochs per stage for each --budget.
BUDGETS = {
    "fast": {"arch": 8, "qat": 1, "mixed": 1, "progressive": 3, "prune": 1, "distill": 8, "batch": 64},
    "default": {"arch": 40, "qat": 4, "mixed": 3, "progressive": 6, "prune": 6, "distill": 40, "batch": 32},
    "thorough": {"arch": 80, "qat": 8, "mixed": 6, "progressive": 12, "prune": 12, "distill": 80, "batch": 32},
}
# Training is measured in optimizer steps, not epochs: every budgeted epoch is worth at least
# this many steps, so a set of 32 windows trains as long as the digits do (about 45 steps an
# epoch) instead of taking one step an epoch; a small set also gets smaller batches.
MIN_STEPS_PER_EPOCH = 20
MIN_BATCH = 8
# Training from scratch on a small set (under AUGMENT_BELOW samples) runs at least this many
# steps whatever the budget: on few windows they take seconds, and the fast budget's 8 epochs
# (160 steps) left small sets near chance (bench/small_data.py).
MIN_SCRATCH_STEPS = 600
# Sets this small are augmented while training (series: time shift, amplitude scaling and
# jitter; images: shifts of up to two pixels); bench/small_data.py measures what it does.
AUGMENT_BELOW = 500
# Images are augmented up to a few thousand: a CNN on a thousand images still learns shifts from
# them. bench/public_sets.py's digits28 (1,257 training images, 28x28): int8 test accuracy
# 0.978 without, 0.991 with (1-NN: 0.987).
AUGMENT_IMAGES_BELOW = 5000
# A validation set this small decides little: equally valid stages are then told apart on
# every labelled sample (training and validation pooled; _rank says why only then).
SMALL_VALIDATION = 100
# Such small sets choose among architectures by repeated stratified cross-validation over every
# labelled window (cv_splits): CV_FOLDS folds (fewer when a class has fewer windows), repeated
# while the held-out predictions number under CV_PREDICTIONS, at most CV_REPEATS[budget] times;
# each fold trains for CV_STEPS optimizer steps (a ranking, not a final model).
CV_FOLDS = 3
CV_PREDICTIONS = 300
CV_REPEATS = {"fast": 1, "default": 2, "thorough": 3}
CV_STEPS = {"fast": 150, "default": 250, "thorough": 400}

Progress = Callable[[str, dict], None]


def augments(n: int, input_shape) -> bool:
    """Whether a training set of n samples of this shape is augmented."""
    return n < (AUGMENT_IMAGES_BELOW if len(tuple(input_shape)) == 3 else AUGMENT_BELOW)


def schedule(n: int, epochs: int, batch_max: int, min_steps: int = 0) -> tuple[int, int, int]:
    """How long training on n samples runs for a budget of this many epochs: (batch, epochs,
    optimizer steps). Steps grow with the data: a budgeted epoch is a pass over every sample,
    worth at least MIN_STEPS_PER_EPOCH steps (small sets also get smaller batches, down to
    MIN_BATCH), and never fewer than min_steps in all."""
    batch = min(batch_max, max(MIN_BATCH, n // 4))
    per_epoch = int(np.ceil(n / batch))
    epochs = max(epochs, int(np.ceil(epochs * MIN_STEPS_PER_EPOCH / per_epoch)), int(np.ceil(min_steps / per_epoch)))
    return batch, epochs, per_epoch * epochs


def cv_splits(y: np.ndarray, budget: str, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Repeated stratified k-fold splits of labelled windows y: (train indices, held-out indices)
    each. CV_FOLDS folds, or as many as the rarest class has windows (at least 2); repeated,
    each time dealt anew, until CV_PREDICTIONS held-out predictions or CV_REPEATS[budget]
    repeats. Empty when a class has a single window (no stratified split exists)."""
    y = np.asarray(y)
    rarest = int(np.bincount(y).min()) if len(y) else 0
    folds = min(CV_FOLDS, rarest)
    if folds < 2:
        return []
    repeats = int(min(CV_REPEATS[budget], max(1, np.ceil(CV_PREDICTIONS / len(y)))))
    rng = np.random.default_rng(seed)
    splits = []
    for _ in range(repeats):
        fold_of = np.empty(len(y), np.int64)
        offset = int(rng.integers(folds))
        for c in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == c))
            fold_of[members] = (np.arange(len(members)) + offset) % folds
            offset += len(members)
        splits += [(np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)) for k in range(folds)]
    return splits


@dataclass
class OptimizeConfig:
    """One optimize run: its data, output folder, board, targets, budget, seed and stages."""
    data: Dataset
    out: Path
    board: Board
    targets: Targets = field(default_factory=Targets)
    min_accuracy: float | None = None
    budget: str = "default"
    seed: int = 0
    stages: tuple[str, ...] = STAGES
    force: bool = False
    arch: arch_lib.Arch | None = None
    data_source: str = "digits"
    framework: str | None = None  # the firmware's framework (None: the board's); it sets how dense layers convert

    def __post_init__(self):
        if self.budget not in BUDGETS:
            raise BadInput(f"unknown budget '{self.budget}'. Budgets: {', '.join(BUDGETS)}")
        if self.min_accuracy is not None:
            check("--min-accuracy", self.min_accuracy)
        check("--seed", self.seed)
        if self.framework is not None:
            from tinydeploy.codegen.frameworks import framework_for
            framework_for(self.board, self.framework)  # one that builds for this board (BadInput naming them)
        from tinydeploy.optimize.energy_seek import check_board
        check_board(self.board, self.targets)  # energy targets need the board's power figures

    def fingerprint(self) -> dict:
        """What a finished stage depends on: a rerun with other values starts over. The targets
        are part of it: they choose the engine, the 4-bit layers and the seek stage's widths, and
        every stage's verdicts are judged against them."""
        x = np.ascontiguousarray(self.data.x_train)
        return {"data": self.data_source, "data_sha256": hashlib.sha256(x.tobytes()).hexdigest()[:16],
                "budget": self.budget, "seed": self.seed, "board": self.board.name,
                "arch": (self.arch or arch_lib.default_arch(self.data.input_shape)).to_dict(),
                "targets": asdict(self.targets), "min_accuracy": self.min_accuracy,
                "per_tensor_dense": self.per_tensor_dense}

    @property
    def per_tensor_dense(self) -> bool:
        """Dense layers quantized per tensor: the framework's FULLY_CONNECTED computes only those
        as the host does (tinydeploy.codegen.frameworks: Arduino's)."""
        from tinydeploy.codegen.frameworks import FRAMEWORKS
        return FRAMEWORKS[self.framework or self.board.framework].per_tensor_dense


@dataclass
class Candidate:
    """A stage's model: its architecture, plain float weights, weight bits and int8 flatbuffer."""
    stage: str
    arch: arch_lib.Arch
    plain: object  # Keras plain logits model (BN folded, raw input)
    bits: dict[str, int]  # layer -> bits for layers below 8
    tflite: bytes
    metrics: StageMetrics | None  # None until measured (most stages leave it to the pipeline)


class _EpochReporter:
    """A Keras callback forwarding per-epoch metrics to the progress function."""

    def __new__(cls, stage: str, epochs: int, progress: Progress | None, history: list):
        keras = _tf.keras()

        class Reporter(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs = {k: float(v) for k, v in (logs or {}).items()}
                history.append({"epoch": len(history) + 1, **logs})
                if progress:
                    progress("epoch", {"stage": stage, "epoch": epoch + 1, "epochs": epochs, "logs": logs})

        return Reporter()


class Trainer:
    """What every stage does with a model: train it, fine-tune it quantization-aware, convert
    it to int8 and measure it, on one run's data, budget, seed, board and targets."""

    def __init__(self, config: OptimizeConfig, progress: Progress | None = None):
        self.config = config
        self.progress = progress
        self.data = config.data
        self.epochs = BUDGETS[config.budget]
        self.n_classes = len(self.data.labels)
        self.keras = _tf.keras()
        self.tf = _tf.tensorflow()
        self.tf.config.experimental.enable_op_determinism()
        self.histories: dict[str, list] = {}  # training key ("prune", "progressive-fixed4") -> epochs

    def extra_histories(self, stage: str) -> dict[str, list]:
        """Training histories a stage kept beside its own ("progressive-fixed4" -> "fixed4")."""
        return {key[len(stage) + 1:]: history for key, history in self.histories.items()
                if key.startswith(stage + "-")}

    def seed(self, stage: str) -> None:
        """Seed every generator for a stage: the run's seed plus the stage's place in STAGES."""
        self.keras.utils.set_random_seed(self.config.seed + STAGES.index(stage))

    def note(self, text: str) -> None:
        if self.progress:
            self.progress("note", {"text": text})

    def fit(self, model, stage: str, epochs: int, lr: float, loss, callbacks=(), early_stopping: bool = False,
             min_steps: int = 0) -> dict:
        """Train with Adam under a cosine-decayed learning rate, reporting each epoch.

        Small sets get smaller batches and more epochs, so that each budgeted epoch is worth
        at least MIN_STEPS_PER_EPOCH optimizer steps. With early_stopping, training stops when
        the validation loss stops improving and the best epoch's weights are kept.

        Returns:
            What was run: epochs, batch size, optimizer steps, and the best epoch when stopping early.
        """
        history = self.histories.setdefault(stage, [])
        n = len(self.data.x_train)
        batch, epochs, _ = schedule(n, epochs, self.epochs["batch"], min_steps)
        per_epoch = int(np.ceil(n / batch))
        decay = self.keras.optimizers.schedules.CosineDecay(lr, per_epoch * max(epochs, 1))
        model.compile(self.keras.optimizers.Adam(decay), loss, metrics=["accuracy"])
        stopper = None
        if early_stopping:
            stopper = self.keras.callbacks.EarlyStopping(monitor="val_loss", patience=max(8, epochs // 4),
                                                         restore_best_weights=True)
            callbacks = [*callbacks, stopper]
        augmented = augments(n, self.data.input_shape)
        train = (augment.augmented(self.tf, self.data.x_train, self.data.y_train, batch, self.config.seed)
                 if augmented else (self.data.x_train, self.data.y_train))
        model.fit(*(train if isinstance(train, tuple) else (train,)), epochs=epochs, verbose=0,
                  batch_size=None if augmented else batch, validation_data=(self.data.x_val, self.data.y_val),
                  callbacks=[*callbacks, _EpochReporter(stage, epochs, self.progress, history)])
        run = {"epochs": epochs, "batch": batch, "steps": per_epoch * epochs,
               "augmentation": augment.note(self.data.input_shape) if augmented else None}
        if stopper is not None:
            ran = stopper.stopped_epoch + 1 if stopper.stopped_epoch else epochs
            run.update({"epochs_run": ran, "steps": per_epoch * ran, "best_epoch": stopper.best_epoch + 1})
        return run

    def float_accuracy(self, plain) -> float:
        """A float (plain) model's accuracy on the validation set."""
        logits = plain.predict(self.data.x_val, verbose=0, batch_size=256)
        return float((logits.argmax(1) == self.data.y_val).mean())

    def convert(self, plain, bits: dict[str, int]) -> bytes:
        """The int8 flatbuffer of a plain model, its layers of 4 bits or fewer packed as int4."""
        from tinydeploy.optimize.convert import to_int8_tflite
        data = to_int8_tflite(arch_lib.with_softmax(plain), self.data.x_train, seed=self.config.seed,
                              per_tensor_dense=self.config.per_tensor_dense)
        four = [name for name, b in bits.items() if b <= 4]
        if four:
            data, _ = quant.pack_int4(data, four)
        return data

    def finetune(self, plain, arch, bits: dict[str, int], stage: str, epochs: int, key_prefix: str,
                  schedule: Callable[[int], int] | None = None):
        """QAT fine-tuning with per-layer weight bits; returns (a plain model with baked
        weights, the bit-width of each epoch when a schedule drives them)."""
        # Layers below 8 bits, or every listed layer when a schedule moves the bits, get
        # the variable-bit quantizer; the rest keep tfmot's default 8-bit scheme.
        keys = {name: f"{key_prefix}_{name}" for name, b in bits.items() if b < 8 or schedule is not None}
        for name, key in keys.items():
            quant.bits_variable(key, bits[name])
        qat = quant.quantize_for_training(arch_lib.with_softmax(plain), keys)
        seen: list[int] = []
        callbacks = []
        if schedule is not None:
            keras = self.keras

            class BitSchedule(keras.callbacks.Callback):
                def on_epoch_begin(self, epoch, logs=None):
                    seen.append(schedule(epoch))
                    for key in keys.values():
                        quant.bits_variable(key, seen[-1])

            callbacks.append(BitSchedule())
        self.fit(qat, stage, epochs, 5e-4, self.keras.losses.SparseCategoricalCrossentropy(), callbacks)
        final_bits = {name: (schedule(epochs - 1) if schedule else b) for name, b in bits.items()}
        baked = quant.bake(qat, arch_lib.plain_model(arch, self.data.input_shape, self.n_classes), final_bits)
        return baked, seen

    def measure(self, tflite_bytes: bytes) -> StageMetrics:
        """The figures every stage reports: the int8 model's accuracy on TFLM, and its cost on
        each engine the board lists (tinydeploy.codegen.engines); the targets are judged on the engine
        chosen for it, and its flash, arena and latency are that engine's."""
        model = parse_model(tflite_bytes)
        measured = tflm.measure_arena(model)
        result = evaluate(model, self.data.x_val, self.data.y_val, measured.arena_bytes)
        options = engine_choice.cost_all(model, self.config.board, self.config.targets, measured=measured,
                                         emulate_in=Path(self.config.out) / "engines")
        chosen, why = engine_choice.choose(options)
        targets = list(chosen.verdicts)
        if self.config.min_accuracy is not None:
            targets.append(TargetResult("accuracy", round(result.accuracy, 5), self.config.min_accuracy, "",
                                        "measured (TFLM int8, validation set)", at_least=True))
        pooled_accuracy = pooled_samples = None
        if len(self.data.x_val) < SMALL_VALIDATION:
            x_all = np.concatenate([self.data.x_train, self.data.x_val])
            y_all = np.concatenate([self.data.y_train, self.data.y_val])
            pooled_accuracy = round(evaluate(model, x_all, y_all, measured.arena_bytes).accuracy, 5)
            pooled_samples = int(len(x_all))
        layers = counts.layer_costs(model)
        return StageMetrics(
            accuracy=round(result.accuracy, 5), val_samples=int(len(self.data.x_val)),
            pooled_accuracy=pooled_accuracy, pooled_samples=pooled_samples,
            engine=chosen.engine, engine_why=why, engines=options,
            flash_bytes=chosen.flash_bytes, arena_bytes=chosen.arena_bytes,
            latency_ms=chosen.latency_ms, latency_basis=chosen.latency_basis,
            model_bytes=model.size_bytes, host_arena_bytes=measured.arena_bytes,
            macs=sum(l.macs for l in layers), params=counts.param_count(model), targets=targets,
            meets_targets=chosen.unavailable is None and all(t.met for t in targets))

    def cv_accuracy(self, arch: arch_lib.Arch, splits: list[tuple[np.ndarray, np.ndarray]]) -> dict:
        """An architecture's float accuracy over cross-validation splits of every labelled window
        (cv_splits), each fold trained from scratch for CV_STEPS[budget] steps: the held-out
        predictions pooled, and each fold's accuracy."""
        from dataclasses import replace
        x = np.concatenate([self.data.x_train, self.data.x_val])
        y = np.concatenate([self.data.y_train, self.data.y_val])
        right, scored, folds = 0, 0, []
        for train, held in splits:
            data = replace(self.data, x_train=x[train], y_train=y[train], x_val=x[held], y_val=y[held],
                           x_test=None, y_test=None)
            fold = Trainer(replace(self.config, data=data), None)
            fold.seed("arch")
            norm = arch_lib.Normalization.of(data.x_train)
            model = arch_lib.build(arch, data.input_shape, self.n_classes, norm)
            fold.fit(model, "arch-cv", 1, 3e-3, self.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                     min_steps=CV_STEPS[self.config.budget])
            hits = int((model.predict(data.x_val, verbose=0, batch_size=256).argmax(1) == data.y_val).sum())
            right, scored = right + hits, scored + len(held)
            folds.append(round(hits / len(held), 4))
        return {"accuracy": round(right / max(scored, 1), 5), "predictions": scored, "folds": folds}

    def train_from_scratch(self, arch: arch_lib.Arch, stage: str, epochs: int | None = None):
        """Train an architecture with BatchNormalization and the input normalization, then fold
        both into a plain model (search trains its trials with this too, with its own epochs).
        Returns (plain model, normalization, what fit ran)."""
        norm = arch_lib.Normalization.of(self.data.x_train)
        model = arch_lib.build(arch, self.data.input_shape, self.n_classes, norm)
        # Early stopping watches the validation loss; on a few dozen windows that loss is noise,
        # and the epoch it picks is a coin toss: small sets run the whole cosine schedule instead
        # (on four public series sets this gained 0-4 points of test accuracy over stopping early).
        small = len(self.data.x_train) < AUGMENT_BELOW
        run = self.fit(model, stage, epochs or self.epochs["arch"], 3e-3,
                       self.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       early_stopping=len(self.data.x_val) >= SMALL_VALIDATION,
                       min_steps=MIN_SCRATCH_STEPS if small else 0)
        return arch_lib.fuse(model, arch, self.data.input_shape, self.n_classes, norm), norm, run
