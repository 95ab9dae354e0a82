"""`tinydeploy optimize`: the progressive optimization pipeline.

Stages run in order, each starting from the best model so far (so a stage
that costs too much accuracy does not drag the later ones down), and each is
measured the same way: the int8 model's accuracy on the TFLM interpreter over
the whole validation set, its flash bytes, the arena the board needs (the measured
TFLM arena with the board's kernel scratch, 32-bit; tinydeploy.costs.arena), its MACs
and its estimated latency on the board. Every stage's model and metrics are
kept in OUT/stages/, written atomically, so a rerun resumes where it stopped.
At the end the best model meeting every target (not simply the last) becomes
OUT/model.tflite.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from tinydeploy.runtime import _tf, tflm
from tinydeploy.costs import counts
from tinydeploy.core.boards import Board
from tinydeploy.core.bounds import check
from tinydeploy.core.data import Dataset
from tinydeploy.core.errors import BadInput
from tinydeploy.runtime.evaluate import compare_with_reference, evaluate, wilson_interval
from tinydeploy.core.model import parse_model
from tinydeploy.core.names import TFLM
from tinydeploy.optimize import architectures as arch_lib
from tinydeploy.optimize import augment, engine_choice, nearest
from tinydeploy.optimize import quantization as quant
from tinydeploy.core.outputs import run_folder, write_atomically
from tinydeploy.core.targets import TargetResult, Targets

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
# A validation set this small decides little: equally valid stages are then told apart on
# every labelled sample (training and validation pooled; _rank says why only then).
SMALL_VALIDATION = 100
MIXED_TOLERANCE = 0.01  # accuracy a 4-bit layer choice may cost (measured) when flash already fits
PRUNE_KEEP = 0.75  # share of filters structured pruning keeps per block
DISTILL_WIDTHS = (0.75, 0.5, 0.35)
DISTILL_TEMPERATURE, DISTILL_ALPHA = 4.0, 0.5
# Target seeking: widths are searched by bisection between these multipliers; below the
# smallest, the first layer's stride doubles (up to SEEK_MAX_STRIDE), then blocks are dropped.
SEEK_MIN_WIDTH, SEEK_STEPS, SEEK_MAX_STRIDE = 0.125, 5, 8
# A trained seek model that still misses (its untrained twin met the targets narrowly) is
# trained again this much narrower, at most SEEK_RETRIES times.
SEEK_RETRY_SHRINK, SEEK_RETRIES = 0.9, 2
COST_TARGETS = ("arena", "model", "latency")
# The nearest stage sizes its prototypes to the flash target less this much for the rest of
# the flatbuffer (operators, tensors, quantization; about 1.3 KB measured on small sets).
NEAREST_OVERHEAD_BYTES = 2048

Progress = Callable[[str, dict], None]


@dataclass
class OptimizeConfig:
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

    def __post_init__(self):
        if self.budget not in BUDGETS:
            raise BadInput(f"unknown budget '{self.budget}'. Budgets: {', '.join(BUDGETS)}")
        if self.min_accuracy is not None:
            check("--min-accuracy", self.min_accuracy)
        check("--seed", self.seed)

    def fingerprint(self) -> dict:
        """What a finished stage depends on: a rerun with other values starts over. The targets
        are part of it: they choose the engine, the 4-bit layers and the seek stage's widths, and
        every stage's verdicts are judged against them."""
        x = np.ascontiguousarray(self.data.x_train)
        return {"data": self.data_source, "data_sha256": hashlib.sha256(x.tobytes()).hexdigest()[:16],
                "budget": self.budget, "seed": self.seed, "board": self.board.name,
                "arch": (self.arch or arch_lib.default_arch(self.data.input_shape)).to_dict(),
                "targets": asdict(self.targets), "min_accuracy": self.min_accuracy}


def check_stages(stages: list[str]) -> tuple[str, ...]:
    """Validate --stages: known names, no repeats, 'arch' first (or 'nearest' alone), 'nearest'
    after the others; 'final' is added last."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise BadInput(f"unknown stages: {', '.join(unknown)}. Stages: {', '.join(STAGES)}")
    if len(set(stages)) != len(stages):
        raise BadInput(f"a stage is repeated in --stages {','.join(stages)}")
    work = [s for s in stages if s != "final"]
    if work != ["nearest"] and (not stages or stages[0] != "arch"):
        raise BadInput("--stages must start with 'arch' (it trains the first model), or be 'nearest' alone")
    if "nearest" in work[:-1]:
        raise BadInput("'nearest' must come after the other stages: none of them can refine its model")
    if "final" in stages[:-1]:
        raise BadInput("'final' must be the last stage")
    return tuple(stages if stages[-1] == "final" else [*stages, "final"])


@dataclass
class Candidate:
    """A stage's model: its architecture, plain float weights, weight bits and int8 flatbuffer."""
    stage: str
    arch: arch_lib.Arch
    plain: object  # Keras plain logits model (BN folded, raw input)
    bits: dict[str, int]  # layer -> bits for layers below 8
    tflite: bytes
    metrics: dict


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


class Pipeline:
    def __init__(self, config: OptimizeConfig, progress: Progress | None = None):
        self.config = config
        self.progress = progress
        self.data = config.data
        self.epochs = BUDGETS[config.budget]
        self.n_classes = len(self.data.labels)
        self.keras = _tf.keras()
        self.tf = _tf.tensorflow()
        self.tf.config.experimental.enable_op_determinism()
        self.histories: dict[str, list] = {}

    # -- shared steps ------------------------------------------------------
    def extra_histories(self, stage: str) -> dict[str, list]:
        """Training histories a stage kept beside its own ("progressive-fixed4" -> "fixed4")."""
        return {key[len(stage) + 1:]: history for key, history in self.histories.items()
                if key.startswith(stage + "-")}

    def _seed(self, stage: str) -> None:
        self.keras.utils.set_random_seed(self.config.seed + STAGES.index(stage))

    def _note(self, text: str) -> None:
        if self.progress:
            self.progress("note", {"text": text})

    def _fit(self, model, stage: str, epochs: int, lr: float, loss, callbacks=(), early_stopping: bool = False,
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
        batch = min(self.epochs["batch"], max(MIN_BATCH, n // 4))
        per_epoch = int(np.ceil(n / batch))
        epochs = max(epochs, int(np.ceil(epochs * MIN_STEPS_PER_EPOCH / per_epoch)), int(np.ceil(min_steps / per_epoch)))
        schedule = self.keras.optimizers.schedules.CosineDecay(lr, per_epoch * max(epochs, 1))
        model.compile(self.keras.optimizers.Adam(schedule), loss, metrics=["accuracy"])
        stopper = None
        if early_stopping:
            stopper = self.keras.callbacks.EarlyStopping(monitor="val_loss", patience=max(8, epochs // 4),
                                                         restore_best_weights=True)
            callbacks = [*callbacks, stopper]
        augmented = n < AUGMENT_BELOW
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

    def _float_accuracy(self, plain) -> float:
        logits = plain.predict(self.data.x_val, verbose=0, batch_size=256)
        return float((logits.argmax(1) == self.data.y_val).mean())

    def _convert(self, plain, bits: dict[str, int]) -> bytes:
        from tinydeploy.optimize.convert import to_int8_tflite
        data = to_int8_tflite(arch_lib.with_softmax(plain), self.data.x_train, seed=self.config.seed)
        four = [name for name, b in bits.items() if b <= 4]
        if four:
            data, _ = quant.pack_int4(data, four)
        return data

    def _finetune(self, plain, arch, bits: dict[str, int], stage: str, epochs: int, key_prefix: str,
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
        self._fit(qat, stage, epochs, 5e-4, self.keras.losses.SparseCategoricalCrossentropy(), callbacks)
        final_bits = {name: (schedule(epochs - 1) if schedule else b) for name, b in bits.items()}
        baked = quant.bake(qat, arch_lib.plain_model(arch, self.data.input_shape, self.n_classes), final_bits)
        return baked, seen

    def measure(self, tflite_bytes: bytes) -> dict:
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
        pooled = {}
        if len(self.data.x_val) < SMALL_VALIDATION:
            x_all = np.concatenate([self.data.x_train, self.data.x_val])
            y_all = np.concatenate([self.data.y_train, self.data.y_val])
            pooled = {"pooled_accuracy": round(evaluate(model, x_all, y_all, measured.arena_bytes).accuracy, 5),
                      "pooled_samples": int(len(x_all))}
        layers = counts.layer_costs(model)
        return {"accuracy": round(result.accuracy, 5), "val_samples": int(len(self.data.x_val)), **pooled,
                "engine": chosen.engine, "engine_why": why, "engines": [o.to_dict() for o in options],
                "flash_bytes": chosen.flash_bytes, "arena_bytes": chosen.arena_bytes,
                "latency_ms": chosen.latency_ms, "latency_basis": chosen.latency_basis,
                "model_bytes": model.size_bytes, "host_arena_bytes": measured.arena_bytes,
                "macs": sum(l.macs for l in layers), "params": counts.param_count(model),
                "targets": [t.to_dict() for t in targets],
                "meets_targets": chosen.unavailable is None and all(t.met for t in targets)}

    # -- stages --------------------------------------------------------------
    def stage_arch(self, previous: Candidate | None, done: list[Candidate]) -> tuple[Candidate, dict]:
        arch = self.config.arch or arch_lib.default_arch(self.data.input_shape)
        plain, norm, run = self.train_from_scratch(arch, "arch")
        details = {"architecture": arch.to_dict(), "float_accuracy": round(self._float_accuracy(plain), 5),
                   "normalization": asdict(norm), "epochs": run["epochs"], "training": run,
                   "note": "int8 by post-training quantization; the input normalization and "
                           "BatchNormalization are folded into the weights"}
        return Candidate("arch", arch, plain, {}, self._convert(plain, {}), {}), details

    def stage_qat(self, previous: Candidate, done: list[Candidate]) -> tuple[Candidate, dict]:
        baked, _ = self._finetune(previous.plain, previous.arch, previous.bits, "qat", self.epochs["qat"], "qat")
        details = {"float_accuracy": round(self._float_accuracy(previous.plain), 5),
                   "ptq_accuracy": previous.metrics["accuracy"],
                   "epochs": self.epochs["qat"],
                   "note": "QAT accuracy is this stage's accuracy; PTQ is the previous model converted directly"}
        return Candidate("qat", previous.arch, baked, dict(previous.bits), self._convert(baked, previous.bits),
                         {}), details

    def _mac_layers(self, plain) -> list:
        return [layer for layer in plain.layers if type(layer).__name__ in quant.MAC_LAYERS]

    def _accuracy_with_4bit(self, plain, names) -> float:
        saved = {name: plain.get_layer(name).get_weights() for name in names}
        for name in names:
            layer = plain.get_layer(name)
            kernel, *rest = saved[name]
            layer.set_weights([quant.fake_quantize_numpy(kernel, 4, quant.channel_axis(type(layer).__name__)),
                               *rest])
        accuracy = self._float_accuracy(plain)
        for name, weights in saved.items():
            plain.get_layer(name).set_weights(weights)
        return accuracy

    def stage_mixed(self, previous: Candidate, done: list[Candidate]) -> tuple[Candidate, dict]:
        plain = previous.plain
        base = self._float_accuracy(plain)
        layers = self._mac_layers(plain)
        sensitivity = {layer.name: round(base - self._accuracy_with_4bit(plain, [layer.name]), 5)
                       for layer in layers}
        params = {layer.name: int(layer.get_weights()[0].size) for layer in layers}
        budget_bytes = self.config.targets.max_model_kb * 1024
        flash = previous.metrics["flash_bytes"]
        chosen: list[str] = []
        # Least sensitive first; among equals, the layer that saves the most flash.
        for name in sorted(sensitivity, key=lambda n: (sensitivity[n], -params[n])):
            trial = chosen + [name]
            drop = base - self._accuracy_with_4bit(plain, trial)
            over_budget = flash > budget_bytes
            if drop <= MIXED_TOLERANCE or over_budget:
                chosen = trial
                flash -= params[name] // 2
        bits = {name: (4 if name in chosen else 8) for name in params}
        low = {name: 4 for name in chosen}
        baked, _ = self._finetune(plain, previous.arch, low, "mixed", self.epochs["mixed"], "mixed")
        unpacked_bytes = self._convert(baked, {})
        packed_bytes, packed_layers = quant.pack_int4(unpacked_bytes, chosen) if chosen else (unpacked_bytes, [])
        details = {"bits": bits, "sensitivity": sensitivity, "tolerance": MIXED_TOLERANCE,
                   "epochs": self.epochs["mixed"]}
        if packed_layers:
            unpacked = parse_model(unpacked_bytes)
            packed = parse_model(packed_bytes)
            details["packing"] = {
                "int4_layers": packed_layers,
                "4bit_in_int8_storage": sorted(set(chosen) - set(packed_layers)),
                "flash_int8_bytes": unpacked.size_bytes,
                "flash_packed_bytes": packed.size_bytes,
                "arena_int8_bytes": tflm.measure_arena(unpacked).arena_bytes,
                "arena_packed_bytes": tflm.measure_arena(packed).arena_bytes,
                "note": "weights packed two per byte as TFLM int4; TFLM unpacks them into an arena "
                        "scratch buffer, so the arena grows while flash shrinks"}
        elif chosen:
            details["packing"] = {"int4_layers": [], "4bit_in_int8_storage": chosen,
                                  "note": "the 4-bit layers are ops TFLM cannot run with packed int4 "
                                          "weights, so they keep int8 storage and save no flash"}
        else:
            details["packing"] = {"int4_layers": [], "note": "no layer could go to 4 bits within the "
                                  f"{MIXED_TOLERANCE:.0%} accuracy tolerance, so nothing was packed"}
        return Candidate("mixed", previous.arch, baked, low, packed_bytes, {}), details

    def stage_progressive(self, previous: Candidate, done: list[Candidate]) -> tuple[Candidate, dict]:
        epochs = self.epochs["progressive"]
        names = [layer.name for layer in self._mac_layers(previous.plain)]

        def schedule(epoch: int) -> int:  # 8 -> 6 -> 4 over thirds of the run
            return (8, 6, 4)[min(2, epoch * 3 // max(epochs, 1))]

        progressive, seen = self._finetune(previous.plain, previous.arch, {n: 8 for n in names}, "progressive",
                                           epochs, "progressive", schedule=schedule)
        self._seed("progressive")
        fixed, _ = self._finetune(previous.plain, previous.arch, {n: 4 for n in names}, "progressive-fixed4",
                                  epochs, "fixed4")
        four = {n: 4 for n in names}
        fixed_metrics = self.measure(self._convert(fixed, four))
        details = {"schedule_bits_per_epoch": seen, "final_bits": 4, "epochs": epochs,
                   "fixed_4bit_accuracy": fixed_metrics["accuracy"],
                   "note": "the bit-width lives in a tf.Variable the weight fake-quantizers read; "
                           "the comparison is fixed 4-bit QAT for the same epochs from the same weights"}
        return Candidate("progressive", previous.arch, progressive, four, self._convert(progressive, four),
                         {}), details

    def stage_prune(self, previous: Candidate, done: list[Candidate]) -> tuple[Candidate, dict]:
        from tinydeploy.optimize.prune import prune
        narrow, narrow_arch, kept = prune(previous.plain, previous.arch, self.data.input_shape,
                                          self.n_classes, PRUNE_KEEP)
        if not kept:
            self._note("prune: no block can be pruned independently (residual ties); model unchanged")
        baked, _ = self._finetune(narrow, narrow_arch, previous.bits, "prune", self.epochs["prune"], "prune")
        details = {"input_stage": previous.stage, "keep_ratio": PRUNE_KEEP, "filters_before": {f"b{i}": previous.arch.blocks[i].filters
                                                                 for i in kept},
                   "filters_after": {f"b{i}": n for i, n in kept.items()},
                   "flash_before_bytes": previous.metrics["flash_bytes"], "macs_before": previous.metrics["macs"],
                   "architecture": narrow_arch.to_dict(), "epochs": self.epochs["prune"],
                   "method": "L1 norm of each output filter; whole filters removed and the model rebuilt"}
        return Candidate("prune", narrow_arch, baked, dict(previous.bits), self._convert(baked, previous.bits),
                         {}), details

    def stage_seek(self, previous: Candidate, done: list[Candidate]) -> tuple[Candidate | None, dict]:
        """Target seeking: when the best model so far misses a flash, arena or latency target,
        find the largest model of its architecture's family that meets them all, and train it.

        The width multiplier is searched by bisection, each candidate costed untrained (sizes
        and MACs don't depend on the weights: tinydeploy.optimize.search.cost). When even the narrowest
        misses, the first layer's stride doubles (lower resolution for images, fewer steps for
        series), then the last blocks go. Returns (None, details) when nothing was needed, or
        when even the smallest model misses (the details name its cost and what it misses).
        """
        best = _best(done, self.config)
        missed = [t["target"] for t in best.metrics["targets"] if not t["met"] and t["target"] in COST_TARGETS]
        tried: list[dict] = []
        if not missed:
            return None, {"needed": False, "note": f"{best.stage} already meets the flash, arena and latency targets"}

        # Candidates are costed untrained. What training changes (a flatbuffer's quantization
        # parameters and folded biases; on an emulated board, the C engine's measured rather
        # than fitted latency) is carried over from the best model: each engine's flash and
        # latency are scaled by the best model's figure over its untrained twin's.
        twin = {c.engine: c for c in self._untrained_costs(best.arch)[0]}
        scale = {}
        for trained in best.metrics["engines"]:
            ref = twin.get(trained["engine"])
            if trained["unavailable"] or ref is None or ref.unavailable:
                continue
            scale[trained["engine"]] = (trained["flash_bytes"] / max(ref.flash_bytes, 1),
                                        trained["latency_ms"] / ref.latency_ms if ref.latency_ms else 1.0)

        def costed(arch: arch_lib.Arch) -> dict:
            untrained, macs = self._untrained_costs(arch)
            options = [c.scaled(*scale.get(c.engine, (1.0, 1.0)), self.config.targets) for c in untrained]
            chosen, _ = engine_choice.choose(options)
            point = {"blocks": len(arch.blocks), "stride": arch.blocks[0].stride, "engine": chosen.engine,
                     "flash_bytes": chosen.flash_bytes, "arena_bytes": chosen.arena_bytes,
                     "latency_ms": chosen.latency_ms, "macs": macs,
                     "misses": [v.describe() for v in chosen.verdicts if not v.met] or
                               ([chosen.unavailable] if chosen.unavailable else []),
                     "architecture": arch.to_dict()}
            tried.append(point)
            return point

        for family in self._seek_families(best.arch):
            if costed(family.scaled(SEEK_MIN_WIDTH))["misses"]:
                continue  # even the narrowest of this family misses: a lower resolution or fewer blocks next
            same_as_best = (family.blocks, family.head_units) == (best.arch.blocks, best.arch.head_units)
            if not same_as_best and not costed(family)["misses"]:  # (the best's own width missed)
                low = 1.0
            else:  # the largest width that meets every cost target
                low = arch_lib.widest_fitting(lambda w: not costed(family.scaled(w))["misses"], SEEK_MIN_WIDTH,
                                              SEEK_STEPS)
            chosen, width, retrained = (family.scaled(low) if low < 1.0 else family), low, []
            while True:
                plain, _, _ = self.train_from_scratch(chosen, "seek")
                baked, _ = self._finetune(plain, chosen, {}, "seek", self.epochs["qat"], "seek")
                tflite = self._convert(baked, {})
                metrics = self.measure(tflite)
                over = [TargetResult.from_dict(t).describe() for t in metrics["targets"]
                        if not t["met"] and t["target"] in COST_TARGETS]
                if not over or width <= SEEK_MIN_WIDTH or len(retrained) == SEEK_RETRIES:
                    break
                # Trained, it costs more than its untrained twin predicted (the weights choose
                # kernel paths, e.g. the C engine's fast requantization): narrower, and again.
                retrained.append({"width": round(width, 4), "misses": over})
                width = max(SEEK_MIN_WIDTH, width * SEEK_RETRY_SHRINK)
                chosen = family.scaled(width)
            details = {"needed": True, "missed_by": best.stage, "missed": missed, "width": round(width, 4),
                       "retrained_narrower": retrained,
                       "trained_to_untrained": {e: {"flash": round(f, 3), "latency": round(l, 3)}
                                                for e, (f, l) in scale.items()},
                       "architecture": chosen.to_dict(), "tried": tried,
                       "method": "bisection on the width multiplier, candidates costed untrained on every "
                                 "engine of the board; then the first stride doubles and the last blocks go "
                                 "while the narrowest misses"}
            return Candidate("seek", chosen, baked, {}, tflite, metrics), details
        smallest = tried[-1]
        return None, {"needed": True, "missed_by": best.stage, "missed": missed, "tried": tried, "smallest": smallest,
                      "note": (f"even the smallest model of the family ({smallest['blocks']} blocks, stride "
                               f"{smallest['stride']}, width {SEEK_MIN_WIDTH:g}) misses: "
                               + "; ".join(smallest["misses"]))}

    def _untrained_costs(self, arch: arch_lib.Arch) -> tuple[list, int]:
        """An architecture's cost on every engine of the board, untrained (sizes, MACs and the
        instructions the C engine runs don't depend on the weights' values), and its MACs."""
        model = arch_lib.untrained_model(arch, self.data)
        return (engine_choice.cost_all(model, self.config.board, self.config.targets,
                                 emulate_in=Path(self.config.out) / "engines"),
                sum(l.macs for l in counts.layer_costs(model)))

    def _seek_families(self, arch: arch_lib.Arch):
        """The architecture, then ever cheaper variants: the first stride doubled up to
        SEEK_MAX_STRIDE (while the input stays at least 4 long), then the last block dropped."""
        first = arch.blocks[0]
        shortest = min(self.data.input_shape[:2] if self.data.kind == "image" else self.data.input_shape[:1])
        strides = [first.stride]
        while strides[-1] * 2 <= SEEK_MAX_STRIDE and shortest // (strides[-1] * 2) >= 4:
            strides.append(strides[-1] * 2)
        for depth in range(len(arch.blocks), 0, -1):
            for stride in strides:
                blocks = (replace(first, stride=stride), *arch.blocks[1:depth])
                yield replace(arch, blocks=blocks, name=f"{arch.name}-s{stride}-d{depth}")

    def train_from_scratch(self, arch: arch_lib.Arch, stage: str, epochs: int | None = None):
        """Train an architecture with BatchNormalization and the input normalization, then fold
        both into a plain model (search trains its trials with this too, with its own epochs).
        Returns (plain model, normalization, what _fit ran)."""
        norm = arch_lib.Normalization.of(self.data.x_train)
        model = arch_lib.build(arch, self.data.input_shape, self.n_classes, norm)
        # Early stopping watches the validation loss; on a few dozen windows that loss is noise,
        # and the epoch it picks is a coin toss: small sets run the whole cosine schedule instead
        # (on four public series sets this gained 0-4 points of test accuracy over stopping early).
        small = len(self.data.x_train) < AUGMENT_BELOW
        run = self._fit(model, stage, epochs or self.epochs["arch"], 3e-3,
                        self.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        early_stopping=len(self.data.x_val) >= SMALL_VALIDATION,
                        min_steps=MIN_SCRATCH_STEPS if small else 0)
        return arch_lib.fuse(model, arch, self.data.input_shape, self.n_classes, norm), norm, run

    def stage_nearest(self, previous: Candidate | None, done: list[Candidate]) -> tuple[Candidate, dict]:
        """A nearest-prototype (1-NN) classifier of the training windows, in the normalized input
        space, with as many prototypes a class as the flash and latency targets allow (k-means
        centroids where a class has more windows). On a few dozen windows of a series it is
        often the better classifier, as the classical 1-NN baseline is; measured like every
        stage, and ranked with them."""
        x, y = self.data.x_train, self.data.y_train
        # Slots for every labelled window of a class (validation too): the deployed model is made
        # again from all of them (_deployed), at the size measured here.
        per_class = int(np.bincount(np.concatenate([y, self.data.y_val]), minlength=self.n_classes).max())
        row_bytes = (int(np.prod(self.data.input_shape)) + 4) * self.n_classes  # int8 weights, int32 bias
        room = self.config.targets.max_model_kb * 1024 - NEAREST_OVERHEAD_BYTES
        per_class = max(1, min(per_class, int(room // row_bytes)))
        board, targets = self.config.board, self.config.targets
        while True:
            plain, arch, made = nearest.model(x, y, self.n_classes, per_class, self.config.seed)
            tflite = self._convert(plain, {})
            latency = counts.latency_estimate_ms(parse_model(tflite), board, board.kernels_for(TFLM))
            if per_class == 1 or (len(tflite) <= targets.max_model_kb * 1024 and latency <= targets.max_latency_ms):
                break
            per_class = max(1, int(per_class * 0.75))
        details = {"architecture": arch.to_dict(), "prototypes_per_class": per_class, **made,
                   "float_accuracy": round(self._float_accuracy(plain), 5),
                   "augmentation": augment.note(self.data.input_shape, nearest.MAX_SHIFT),
                   "note": "a nearest-prototype classifier in the normalized input space, from the training "
                           "windows, trained leave-one-out (tinydeploy.optimize.nearest); chosen, it is made "
                           "again from every labelled window and deployed"}
        metrics = self.measure(tflite)
        x_all = np.concatenate([x, self.data.x_val])
        y_all = np.concatenate([y, self.data.y_val])
        if len(self.data.x_val) < SMALL_VALIDATION and per_class >= np.bincount(y_all).max() and len(y_all) > 1:
            # The deployed classifier starts from every labelled window: its leave-one-out 1-NN
            # accuracy is a held-out figure on all of them, where validation has a few (_rank).
            metrics.update(loo_accuracy=round(nearest.leave_one_out(x_all, y_all), 5), loo_samples=int(len(x_all)))
            details["leave_one_out"] = {"accuracy": metrics["loo_accuracy"], "samples": metrics["loo_samples"],
                                        "basis": "float 1-NN of every labelled window, each by its nearest other "
                                                 "one, in the prototypes' normalized space (before training)"}
        return Candidate("nearest", arch, plain, {}, tflite, metrics), details

    def stage_distill(self, previous: Candidate, done: list[Candidate]) -> tuple[Candidate, dict]:
        from tinydeploy.optimize.convert import to_int8_tflite
        from tinydeploy.optimize.distill import distillation_model
        teacher = _best(done, self.config)
        width, student_arch = None, None
        for w in DISTILL_WIDTHS:
            trial = teacher.arch.scaled(w)
            probe = arch_lib.plain_model(trial, self.data.input_shape, self.n_classes)
            size = len(to_int8_tflite(arch_lib.with_softmax(probe), self.data.x_train[:16], samples=16))
            width, student_arch = w, trial
            if size < teacher.metrics["model_bytes"] and size <= self.config.targets.max_model_kb * 1024:
                break
        norm = arch_lib.Normalization.of(self.data.x_train)
        student = arch_lib.build(student_arch, self.data.input_shape, self.n_classes, norm)
        distiller = distillation_model(student, teacher.plain, DISTILL_TEMPERATURE, DISTILL_ALPHA)
        small = len(self.data.x_train) < AUGMENT_BELOW
        self._fit(distiller, "distill", self.epochs["distill"], 3e-3, None, min_steps=MIN_SCRATCH_STEPS if small else 0)
        plain = arch_lib.fuse(student, student_arch, self.data.input_shape, self.n_classes, norm)
        baked, _ = self._finetune(plain, student_arch, {}, "distill", self.epochs["qat"], "distill")
        details = {"teacher_stage": teacher.stage, "teacher_accuracy": teacher.metrics["accuracy"],
                   "teacher_params": teacher.metrics["params"], "student_width": width,
                   "student_architecture": student_arch.to_dict(), "temperature": DISTILL_TEMPERATURE,
                   "alpha": DISTILL_ALPHA, "epochs": self.epochs["distill"],
                   "loss": "alpha*T^2*KL(softmax(teacher/T) || softmax(student/T)) + (1-alpha)*CE(labels)"}
        return Candidate("distill", student_arch, baked, {}, self._convert(baked, {}), {}), details


def _rank(candidate: Candidate) -> tuple:
    """Sort key: meets every target, then runs on an engine of the board, fewest misses,
    higher held-out accuracy (the low end of its 95% interval), then (when the validation set
    is small) higher accuracy pooled over every labelled sample, fewer layers below 8 bits,
    smaller flash.

    Held-out accuracy is the validation accuracy, except for a nearest-prototype classifier
    made from every labelled window when the validation set is small: its leave-one-out 1-NN
    accuracy over all of them (stage_nearest), where validation has a handful. Figures of so
    different sample counts are compared by the low ends of their Wilson intervals, which
    for one sample count order them as the accuracies do. On digit rows (40 windows, 10
    classes) the nearest stage scored 4/10 on validation against 6/10 for distillation (test
    0.56, 1-NN 0.76); leave-one-out gave it 33/40, and it scored 0.765 on the test windows.
    On ArrowHead for the ESP32-C3 a CNN at 8/8 on validation (low end 0.68; test 0.73) tied
    the nearest stage, which is 33/36 left out (low end 0.78; test 0.88). The CNNs stay
    ahead where they win: BasicMotions 8/8 against 22/40, the synthetic IMU set 8/8 against
    13/40, the wave set 9/10 (low end 0.60) against 32/50 (0.50).

    The validation windows are the only ones no stage trained on. The pooled figure adds the
    training windows, on which a CNN is scored in-sample (it has fitted them) while the nearest
    stage's trained prototypes no longer copy theirs: ranked on it first, ArrowHead (36
    windows) chose a CNN at 0.875 on validation over the nearest stage at 1.0, and scored 0.73
    on the test windows against 0.81. So it only breaks ties among equally valid stages (and
    still sinks a stage that underfits).

    Among equally accurate models, 4-bit weights are a cost a small validation set can't
    show: on ArrowHead (36 windows) four stages tied on every labelled sample and the 4-bit
    one scored 0.71 on the test windows against 0.77 for the 8-bit ones."""
    m = candidate.metrics
    runnable = m["flash_bytes"] is not None  # None: no engine of the board can run the model
    misses = sum(not t["met"] for t in m["targets"])
    low_bits = sum(1 for b in candidate.bits.values() if b < 8)
    return (m["meets_targets"], runnable, -misses, _held_out_low(m), m.get("pooled_accuracy", 0.0), -low_bits,
            -(m["flash_bytes"] or 0))


def _held_out_low(m: dict) -> float:
    """The low end of the 95% Wilson interval of a stage's held-out accuracy (_rank)."""
    accuracy, n = ((m["loo_accuracy"], m["loo_samples"]) if "loo_accuracy" in m
                   else (m["accuracy"], m.get("val_samples")))
    return wilson_interval(round(accuracy * n), n)[0] if n else accuracy


def _chosen_on(done: list[Candidate], best: Candidate, val: int) -> str:
    """What _rank compared, in words, for the report."""
    if "pooled_accuracy" not in best.metrics:
        return "validation accuracy"
    loo = [c.metrics["loo_samples"] for c in done if "loo_accuracy" in c.metrics]
    held_out = (f"the low end of the 95% interval of held-out accuracy (the nearest stage's leave-one-out 1-NN "
                f"accuracy over all {loo[0]} labelled samples, validation accuracy for the others)" if loo
                else "validation accuracy")
    return (f"{held_out}, ties broken on all {best.metrics['pooled_samples']} labelled samples (the validation "
            f"set of {val} is small)")


def _best(done: list[Candidate], config: OptimizeConfig) -> Candidate:
    return max(done, key=_rank)


def _write_atomically(folder: Path, files: dict[str, bytes | str]) -> None:
    """Write a stage's files into folder so that it exists complete or not at all."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, content in files.items():
        (tmp / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


@dataclass
class OptimizeReport:
    report: dict
    model_path: Path
    met: bool
    missed: list[str]

    def explanation(self) -> str:
        """Why no model meets every target, and where the best one found was written; when
        accuracy is what missed, the accuracy each stage bought at its cost."""
        reached = ""
        if any(m.startswith("accuracy") for m in self.missed):
            reached = " Accuracy reached at each cost: " + "; ".join(
                f"{s['stage']} {s['accuracy']:.3f} at {s['flash_bytes']:,} B, {s['latency_ms']:.3f} ms"
                for s in self.report["stages"] if s["flash_bytes"] is not None) + "."
        return (f"no model meets every target; the best found ({self.report['chosen']['stage']}) was written to "
                f"{self.model_path}. Missed: {'; '.join(self.missed)}.{reached}")


def _read_json(path: Path):
    """A JSON file's content, or None when it is missing or not readable JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _load_candidate(folder: Path, data: Dataset) -> Candidate:
    metrics = json.loads((folder / "metrics.json").read_text())
    arch = arch_lib.Arch.from_dict(metrics["arch"])
    plain = arch_lib.plain_model(arch, data.input_shape, len(data.labels))
    plain.load_weights(str(folder / "plain.weights.h5"))
    return Candidate(metrics["stage"], arch, plain, {k: int(v) for k, v in metrics["bits"].items()},
                     (folder / "model.tflite").read_bytes(), metrics)


def _resume_check(out: Path, config: OptimizeConfig) -> None:
    """Refuse a folder that holds a run with other settings (unless --force), then record ours."""
    run_file = out / "run.json"
    fingerprint = config.fingerprint()
    if run_file.exists() and not config.force:
        previous = _read_json(run_file)
        if not isinstance(previous, dict):
            raise BadInput(f"{run_file} is not a run record tinydeploy can read; pass --force to start over "
                           "there, or choose another --out")
        if previous != fingerprint:
            changed = sorted(k for k in fingerprint if previous.get(k) != fingerprint.get(k))
            raise BadInput(f"{out} holds a run with other settings ({', '.join(changed)} differ); "
                           "pass --force to start over there, or choose another --out")
    if config.force:
        shutil.rmtree(out / "stages", ignore_errors=True)
    run_file.write_text(json.dumps(fingerprint, indent=2))


def _resumed(folder: Path, chain: list[str], pipeline: Pipeline, data: Dataset) -> Candidate | None:
    """A stage finished by an earlier run of the same chain, or None (redo it: missing or damaged)."""
    stored = _read_json(folder / "metrics.json")
    if not isinstance(stored, dict) or stored.get("chain") != chain:
        return None
    candidate = _load_candidate(folder, data)
    if "engines" not in candidate.metrics:  # kept by a tinydeploy that costed TFLM only
        candidate.metrics.update(pipeline.measure(candidate.tflite))
    pipeline.histories[candidate.stage] = stored.get("history", [])
    return candidate


def _save_stage(folder: Path, candidate: Candidate) -> None:
    weights = folder.with_name(folder.name + ".weights.h5")
    weights.parent.mkdir(parents=True, exist_ok=True)
    candidate.plain.save_weights(str(weights))
    _write_atomically(folder, {"model.tflite": candidate.tflite, "plain.weights.h5": weights.read_bytes(),
                               "metrics.json": json.dumps(candidate.metrics, indent=2)})
    weights.unlink()


def _run_stages(config: OptimizeConfig, out: Path, pipeline: Pipeline, progress: Progress | None):
    """Every stage before final, resuming the finished ones: (candidates, each stage's details)."""
    done: list[Candidate] = []
    details: dict[str, dict] = {}
    chain: list[str] = []
    work = [s for s in config.stages if s != "final"]
    for position, stage in enumerate(work):
        chain.append(stage)
        folder = out / "stages" / f"{position + 1:02d}-{stage}"
        kept = _resumed(folder, chain, pipeline, config.data)
        if kept is not None:
            done.append(kept)
            details[stage] = kept.metrics["details"]
            if progress:
                progress("skip", {"stage": stage, "metrics": kept.metrics})
            continue
        if progress:
            progress("stage", {"stage": stage, "index": position + 1, "total": len(work) + 1})
        started = time.perf_counter()
        pipeline._seed(stage)
        candidate, info = getattr(pipeline, f"stage_{stage}")(_best(done, config) if done else None, done)
        details[stage] = info
        if candidate is None:  # a stage with nothing to add (seek, when the targets are met)
            if progress:
                progress("note", {"text": f"{stage}: {info.get('note', 'nothing to do')}"})
            continue
        if not candidate.metrics:  # (seek measures its own, to check the trained model)
            candidate.metrics = pipeline.measure(candidate.tflite)
        candidate.metrics.update({"stage": stage, "chain": list(chain), "arch": candidate.arch.to_dict(),
                                  "bits": candidate.bits, "seconds": round(time.perf_counter() - started, 1),
                                  "details": info, "history": pipeline.histories.get(stage, []),
                                  **{f"history_{k}": v for k, v in pipeline.extra_histories(stage).items()}})
        _save_stage(folder, candidate)
        done.append(candidate)
        if progress:
            progress("done", {"stage": stage, "metrics": candidate.metrics})
    return done, details


OUTPUTS = ("run.json", "model.tflite", "report.json", "report.html")  # what optimize writes into OUT


def optimize(config: OptimizeConfig, progress: Progress | None = None) -> OptimizeReport:
    """Run (or resume) the optimization pipeline.

    Args:
        config: data, output folder, board, targets, budget, seed and stages.
        progress: optional callback receiving ("stage", ...), ("epoch", ...),
            ("skip", ...), ("note", ...) and ("done", ...) events.

    Returns:
        The report; OUT/model.tflite, OUT/report.json and OUT/report.html are written.
    """
    with run_folder(config.out, OUTPUTS, config.force) as out:  # locked; the user's own files kept
        _resume_check(out, config)
        done, details = _run_stages(config, out, Pipeline(config, progress), progress)
        total = len([s for s in config.stages if s != "final"]) + 1
        if progress:
            progress("stage", {"stage": "final", "index": total, "total": total})
        return _final(config, out, done, details)


def _deployed(best: Candidate, config: OptimizeConfig) -> tuple[bytes, str]:
    """The flatbuffer to deploy, and what was changed (empty: the chosen one as it is). A
    nearest-prototype classifier is chosen on prototypes from the training windows, so that
    its validation figures are honest; it is deployed with the same number of prototypes a
    class made from every labelled window, as a 1-NN classifier keeps every example."""
    if not best.arch.prototypes:
        return best.tflite, ""
    from tinydeploy.optimize.convert import to_int8_tflite
    x = np.concatenate([config.data.x_train, config.data.x_val])
    y = np.concatenate([config.data.y_train, config.data.y_val])
    plain, _, made = nearest.model(x, y, len(config.data.labels), best.arch.prototypes, config.seed)
    return (to_int8_tflite(arch_lib.with_softmax(plain), x, seed=config.seed),
            f"the chosen nearest-prototype classifier made again, and trained the same way, from "
            f"{made['prototypes']} (training and validation); its validation figures are those of the "
            f"training windows' classifier")


def _final(config: OptimizeConfig, out: Path, done: list[Candidate], details: dict) -> OptimizeReport:
    """Choose, validate on TFLM, cross-check with TFLite's reference kernels, and report."""
    best = _best(done, config)
    model = parse_model(best.tflite)
    tflm_eval = evaluate(model, config.data.x_val, config.data.y_val)
    deployed, refit = _deployed(best, config)
    if refit:
        model = parse_model(deployed)  # validated above as chosen; checked and tested as deployed
        reference = compare_with_reference(model, config.data.x_val, evaluate(model, config.data.x_val,
                                                                                config.data.y_val).outputs)
    else:
        reference = compare_with_reference(model, config.data.x_val, tflm_eval.outputs)
    write_atomically(out / "model.tflite", deployed)
    test = None
    if config.data.x_test is not None:  # once, for the chosen model only
        test = evaluate(model, config.data.x_test, config.data.y_test).to_dict()
        test["basis"] = "int8 model on the TFLM interpreter; the held-out test set, used for nothing else"
    missed = [TargetResult.from_dict(t).describe() for t in best.metrics["targets"] if not t["met"]]
    if best.metrics["flash_bytes"] is None:
        missed.append(f"no engine of {config.board.name} runs the model ({best.metrics['engine_why']})")
    if missed and (details.get("seek") or {}).get("smallest"):
        missed.append(details["seek"]["note"])
    report = {
        "tinydeploy": "optimize", "seed": config.seed, "budget": config.budget, "board": config.board.name,
        "data": config.data.summary(), "labels": config.data.labels,
        "targets": {"max_arena_kb": config.targets.max_arena_kb, "max_model_kb": config.targets.max_model_kb,
                    "max_latency_ms": config.targets.max_latency_ms, "min_accuracy": config.min_accuracy},
        "stages": [{k: v for k, v in c.metrics.items() if k not in ("chain",)} for c in done],
        "chosen": {"stage": best.stage, "model": str(out / "model.tflite"), "sha256": model.sha256,
                   "accuracy_tflm": round(tflm_eval.accuracy, 5), "validation": tflm_eval.to_dict(),
                   "chosen_on": _chosen_on(done, best, len(config.data.x_val)),
                   "reference_check": reference, **({"deployed": refit} if refit else {}),
                   **{k: best.metrics[k] for k in ("flash_bytes", "arena_bytes", "macs", "latency_ms", "latency_basis",
                                                   "model_bytes", "engine", "engine_why", "engines")}},
        "test": test,
        "seek": details.get("seek"),
        "met": best.metrics["meets_targets"], "missed": missed,
    }
    write_atomically(out / "report.json", json.dumps(report, indent=2))
    from tinydeploy.core.report import optimize_html
    write_atomically(out / "report.html", optimize_html(report))
    return OptimizeReport(report, out / "model.tflite", best.metrics["meets_targets"], missed)
