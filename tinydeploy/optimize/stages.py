"""The optimize stages, one small class each, in one registry (STAGE_CLASSES).

A stage's ``run(work, previous)`` starts from the best model so far (previous; None for the
first stage) and returns (its Candidate, what it did) or (None, why) when it has nothing to
add. A stage may measure its own model (seek and nearest do, to check or add to the
figures); the pipeline measures the others, records them and chooses among them.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from tinydeploy.core.model import parse_model
from tinydeploy.costs import counts, figures
from tinydeploy.optimize import architectures as arch_lib
from tinydeploy.optimize import augment, engine_choice, fit, nearest
from tinydeploy.optimize import quantization as quant
from tinydeploy.optimize import training
from tinydeploy.optimize.training import (AUGMENT_BELOW, MIN_SCRATCH_STEPS, SMALL_VALIDATION, Candidate, Trainer,
                                          cv_splits)
from tinydeploy.runtime import tflm

MIXED_TOLERANCE = 0.01  # accuracy a 4-bit layer choice may cost (measured) when flash already fits
PRUNE_KEEP = 0.75  # share of filters structured pruning keeps per block
DISTILL_WIDTHS = (0.75, 0.5, 0.35)
DISTILL_TEMPERATURE, DISTILL_ALPHA = 4.0, 0.5
# A trained seek model that still misses (its untrained twin met the targets narrowly) is
# trained again this much narrower, at most SEEK_RETRIES times.
SEEK_RETRY_SHRINK, SEEK_RETRIES = 0.9, 2
COST_TARGETS = ("arena", "model", "latency", "energy", "power")  # energy, power: only when asked
# The nearest stage sizes its prototypes to the flash target less this much for the rest of
# the flatbuffer (operators, tensors, quantization; about 1.3 KB measured on small sets).
NEAREST_OVERHEAD_BYTES = 2048


class ArchStage:
    """Train the architecture from scratch: the configured one, or one of the family that suits
    the data (architectures.family: its shape and class count) sized to the targets.

    Sizing: the family's width is bisected (architectures.widest) so that its untrained twin meets
    the flash, arena and latency targets on an engine of the board with SIZE_MARGIN to spare (a
    trained model costs a little more); a set of GROW_FROM training samples or more may grow past
    the base width, up to max_width(samples), to spend the budget. A set too small to validate
    on (under SMALL_VALIDATION validation windows) chooses between the sized width and half of it
    by repeated stratified cross-validation over every labelled window (training.cv_splits)."""
    name = "arch"

    def run(self, work: Trainer, previous: Candidate | None) -> tuple[Candidate, dict]:
        sizing, chosen_by = None, None
        if work.config.arch is not None:
            arch = work.config.arch
        else:
            arch, sizing = sized(work)
            arch, chosen_by = self._cross_validated(work, arch, sizing)
        plain, norm, run = work.train_from_scratch(arch, self.name)
        details = {"architecture": arch.to_dict(), "float_accuracy": round(work.float_accuracy(plain), 5),
                   "normalization": asdict(norm), "epochs": run["epochs"], "training": run,
                   **({"sizing": sizing} if sizing else {}), **({"chosen_by": chosen_by} if chosen_by else {}),
                   "note": "int8 by post-training quantization; the input normalization and "
                           "BatchNormalization are folded into the weights"}
        return Candidate(self.name, arch, plain, {}, work.convert(plain, {}), None), details

    @staticmethod
    def _cross_validated(work: Trainer, arch: arch_lib.Arch, sizing: dict) -> tuple[arch_lib.Arch, dict | None]:
        if len(work.data.x_val) >= SMALL_VALIDATION:
            return arch, None
        y = np.concatenate([work.data.y_train, work.data.y_val])
        splits = cv_splits(y, work.config.budget, work.config.seed)
        if not splits:
            return arch, {"method": "none: a class has a single labelled window, so no stratified split exists"}
        make = arch_lib.family(work.data.input_shape, work.n_classes)
        width = sizing["width"]
        candidates = {width: arch, width / 2: make(width / 2)}
        scores = {w: work.cv_accuracy(a, splits) for w, a in candidates.items()}
        best = max(scores, key=lambda w: (scores[w]["accuracy"], w))
        if work.progress:
            work.progress("note", {"text": "arch: cross-validated widths " + ", ".join(
                f"{w:.3g}: {scores[w]['accuracy']:.3f}" for w in scores)})
        return candidates[best], {
            "method": f"repeated stratified cross-validation over all {len(y)} labelled windows "
                      f"({len(splits)} folds, {training.CV_STEPS[work.config.budget]} steps each, float accuracy)",
            "splits": len(splits), "width": best,
            "candidates": [{"width": round(w, 4), **scores[w]} for w in scores]}


# The untrained twin must meet each cost target with this share of it to spare: trained, the
# flatbuffer's quantization parameters and (on the C engine) kernel paths cost a little more.
SIZE_MARGIN = 0.9
MIN_FAMILY_WIDTH = 0.25
GROW_FROM = 1000  # training samples from which the family grows past its base width


def max_width(samples: int) -> float:
    """How far past its base width a family may grow for a set of this many training samples:
    not at all under GROW_FROM (a wider net only fits the few samples harder), 2x up to four
    times that, 3x beyond."""
    return 1.0 if samples < GROW_FROM else 2.0 if samples < 4 * GROW_FROM else 3.0


def sized(work: Trainer) -> tuple[arch_lib.Arch, dict]:
    """The data's family (architectures.family) at the widest width that meets the targets
    (ArchStage), with what was tried."""
    make = arch_lib.family(work.data.input_shape, work.n_classes)
    t = work.config.targets
    margin = replace(t, max_model_kb=t.max_model_kb * SIZE_MARGIN, max_latency_ms=t.max_latency_ms * SIZE_MARGIN,
                     max_arena_kb=t.max_arena_kb * SIZE_MARGIN)
    tried: list[dict] = []

    def fits(width: float) -> bool:
        model = arch_lib.untrained_model(make(width), work.data)
        options = engine_choice.cost_all(model, work.config.board, margin,
                                         emulate_in=Path(work.config.out) / "engines")
        chosen, _ = engine_choice.choose(options)
        tried.append({"width": round(width, 4), "engine": chosen.engine, "flash_bytes": chosen.flash_bytes,
                      "arena_bytes": chosen.arena_bytes, "latency_ms": chosen.latency_ms, "fits": chosen.met})
        return chosen.met

    samples = len(work.data.x_train)
    if fits(1.0):
        width = arch_lib.widest(fits, 1.0, max_width(samples), steps=3) if max_width(samples) > 1 else 1.0
    elif fits(MIN_FAMILY_WIDTH):
        width = arch_lib.widest(fits, MIN_FAMILY_WIDTH, 1.0, steps=3, high_fits=False)
    else:
        width = 1.0  # nothing of the family fits: the seek stage shrinks it further (stride, blocks)
    arch = make(width)
    return arch, {"family": arch.name, "width": round(width, 4), "max_width": max_width(samples),
                  "margin": SIZE_MARGIN, "tried": tried,
                  "method": "bisection on the width, each candidate costed untrained on every engine of the board "
                            "against the targets less the margin"}


class QatStage:
    """Quantization-aware fine-tuning of the best model so far."""
    name = "qat"

    def run(self, work: Trainer, previous: Candidate) -> tuple[Candidate, dict]:
        epochs = work.epochs["qat"]
        baked, _ = work.finetune(previous.plain, previous.arch, previous.bits, self.name, epochs, "qat")
        details = {"float_accuracy": round(work.float_accuracy(previous.plain), 5),
                   "ptq_accuracy": previous.metrics.accuracy, "epochs": epochs,
                   "note": "QAT accuracy is this stage's accuracy; PTQ is the previous model converted directly"}
        return Candidate(self.name, previous.arch, baked, dict(previous.bits), work.convert(baked, previous.bits),
                         None), details


def _mac_layers(plain) -> list:
    return [layer for layer in plain.layers if type(layer).__name__ in quant.MAC_LAYERS]


def _accuracy_with_4bit(work: Trainer, plain, names) -> float:
    """The float model's accuracy with these layers' weights fake-quantized to 4 bits."""
    saved = {name: plain.get_layer(name).get_weights() for name in names}
    for name in names:
        layer = plain.get_layer(name)
        kernel, *rest = saved[name]
        layer.set_weights([quant.fake_quantize_numpy(kernel, 4, quant.channel_axis(type(layer).__name__)), *rest])
    accuracy = work.float_accuracy(plain)
    for name, weights in saved.items():
        plain.get_layer(name).set_weights(weights)
    return accuracy


class MixedStage:
    """Mixed precision: the layers least sensitive to 4-bit weights (measured one by one) go to
    4 bits within MIXED_TOLERANCE, or while flash is over its target; then QAT, and the 4-bit
    weights packed two per byte where TFLM can run them so."""
    name = "mixed"

    def run(self, work: Trainer, previous: Candidate) -> tuple[Candidate, dict]:
        plain = previous.plain
        base = work.float_accuracy(plain)
        layers = _mac_layers(plain)
        sensitivity = {layer.name: round(base - _accuracy_with_4bit(work, plain, [layer.name]), 5)
                       for layer in layers}
        params = {layer.name: int(layer.get_weights()[0].size) for layer in layers}
        budget_bytes = work.config.targets.max_model_kb * 1024
        flash = previous.metrics.flash_bytes
        chosen: list[str] = []
        # Least sensitive first; among equals, the layer that saves the most flash.
        for name in sorted(sensitivity, key=lambda n: (sensitivity[n], -params[n])):
            trial = chosen + [name]
            drop = base - _accuracy_with_4bit(work, plain, trial)
            over_budget = flash > budget_bytes
            if drop <= MIXED_TOLERANCE or over_budget:
                chosen = trial
                flash -= params[name] // 2
        bits = {name: (4 if name in chosen else 8) for name in params}
        low = {name: 4 for name in chosen}
        baked, _ = work.finetune(plain, previous.arch, low, self.name, work.epochs["mixed"], "mixed")
        unpacked_bytes = work.convert(baked, {})
        packed_bytes, packed_layers = quant.pack_int4(unpacked_bytes, chosen) if chosen else (unpacked_bytes, [])
        details = {"bits": bits, "sensitivity": sensitivity, "tolerance": MIXED_TOLERANCE,
                   "epochs": work.epochs["mixed"], "packing": self._packing(chosen, unpacked_bytes, packed_bytes,
                                                                            packed_layers)}
        return Candidate(self.name, previous.arch, baked, low, packed_bytes, None), details

    @staticmethod
    def _packing(chosen: list[str], unpacked_bytes: bytes, packed_bytes: bytes, packed_layers: list[str]) -> dict:
        """What packing the 4-bit layers did to flash and arena, or why nothing was packed."""
        if packed_layers:
            unpacked = parse_model(unpacked_bytes)
            packed = parse_model(packed_bytes)
            return {"int4_layers": packed_layers,
                    "4bit_in_int8_storage": sorted(set(chosen) - set(packed_layers)),
                    "flash_int8_bytes": unpacked.size_bytes,
                    "flash_packed_bytes": packed.size_bytes,
                    "arena_int8_bytes": tflm.measure_arena(unpacked).arena_bytes,
                    "arena_packed_bytes": tflm.measure_arena(packed).arena_bytes,
                    "note": "weights packed two per byte as TFLM int4; TFLM unpacks them into an arena "
                            "scratch buffer, so the arena grows while flash shrinks"}
        if chosen:
            return {"int4_layers": [], "4bit_in_int8_storage": chosen,
                    "note": "the 4-bit layers are ops TFLM cannot run with packed int4 "
                            "weights, so they keep int8 storage and save no flash"}
        return {"int4_layers": [], "note": "no layer could go to 4 bits within the "
                f"{MIXED_TOLERANCE:.0%} accuracy tolerance, so nothing was packed"}


class ProgressiveStage:
    """Progressive quantization: every MAC layer's weights go 8 -> 6 -> 4 bits during QAT,
    compared with fixed 4-bit QAT for the same epochs from the same weights."""
    name = "progressive"

    def run(self, work: Trainer, previous: Candidate) -> tuple[Candidate, dict]:
        epochs = work.epochs["progressive"]
        names = [layer.name for layer in _mac_layers(previous.plain)]

        def schedule(epoch: int) -> int:  # 8 -> 6 -> 4 over thirds of the run
            return (8, 6, 4)[min(2, epoch * 3 // max(epochs, 1))]

        progressive, seen = work.finetune(previous.plain, previous.arch, {n: 8 for n in names}, self.name,
                                          epochs, "progressive", schedule=schedule)
        work.seed(self.name)
        fixed, _ = work.finetune(previous.plain, previous.arch, {n: 4 for n in names}, "progressive-fixed4",
                                 epochs, "fixed4")
        four = {n: 4 for n in names}
        fixed_metrics = work.measure(work.convert(fixed, four))
        details = {"schedule_bits_per_epoch": seen, "final_bits": 4, "epochs": epochs,
                   "fixed_4bit_accuracy": fixed_metrics.accuracy,
                   "note": "the bit-width lives in a tf.Variable the weight fake-quantizers read; "
                           "the comparison is fixed 4-bit QAT for the same epochs from the same weights"}
        return Candidate(self.name, previous.arch, progressive, four, work.convert(progressive, four),
                         None), details


class PruneStage:
    """Structured pruning: whole filters by their L1 norm (PRUNE_KEEP kept a block), then QAT."""
    name = "prune"

    def run(self, work: Trainer, previous: Candidate) -> tuple[Candidate, dict]:
        from tinydeploy.optimize.prune import prune
        narrow, narrow_arch, kept = prune(previous.plain, previous.arch, work.data.input_shape,
                                          work.n_classes, PRUNE_KEEP)
        if not kept:
            work.note("prune: no block can be pruned independently (residual ties); model unchanged")
        baked, _ = work.finetune(narrow, narrow_arch, previous.bits, self.name, work.epochs["prune"], "prune")
        details = {"input_stage": previous.stage, "keep_ratio": PRUNE_KEEP,
                   "filters_before": {f"b{i}": previous.arch.blocks[i].filters for i in kept},
                   "filters_after": {f"b{i}": n for i, n in kept.items()},
                   "flash_before_bytes": previous.metrics.flash_bytes, "macs_before": previous.metrics.macs,
                   "architecture": narrow_arch.to_dict(), "epochs": work.epochs["prune"],
                   "method": "L1 norm of each output filter; whole filters removed and the model rebuilt"}
        return Candidate(self.name, narrow_arch, baked, dict(previous.bits), work.convert(baked, previous.bits),
                         None), details


class DistillStage:
    """Knowledge distillation into a narrower student (the widest of DISTILL_WIDTHS whose
    flatbuffer is smaller than the teacher's and fits the flash target), then QAT."""
    name = "distill"

    def run(self, work: Trainer, previous: Candidate) -> tuple[Candidate, dict]:
        from tinydeploy.optimize.convert import to_int8_tflite
        from tinydeploy.optimize.distill import distillation_model
        teacher, data = previous, work.data
        width, student_arch = None, None
        for w in DISTILL_WIDTHS:
            trial = teacher.arch.scaled(w)
            probe = arch_lib.plain_model(trial, data.input_shape, work.n_classes)
            size = len(to_int8_tflite(arch_lib.with_softmax(probe), data.x_train[:16], samples=16))
            width, student_arch = w, trial
            if size < teacher.metrics.model_bytes and size <= work.config.targets.max_model_kb * 1024:
                break
        norm = arch_lib.Normalization.of(data.x_train)
        student = arch_lib.build(student_arch, data.input_shape, work.n_classes, norm)
        distiller = distillation_model(student, teacher.plain, DISTILL_TEMPERATURE, DISTILL_ALPHA)
        small = len(data.x_train) < AUGMENT_BELOW
        work.fit(distiller, self.name, work.epochs["distill"], 3e-3, None, min_steps=MIN_SCRATCH_STEPS if small else 0)
        plain = arch_lib.fuse(student, student_arch, data.input_shape, work.n_classes, norm)
        baked, _ = work.finetune(plain, student_arch, {}, self.name, work.epochs["qat"], "distill")
        details = {"teacher_stage": teacher.stage, "teacher_accuracy": teacher.metrics.accuracy,
                   "teacher_params": teacher.metrics.params, "student_width": width,
                   "student_architecture": student_arch.to_dict(), "temperature": DISTILL_TEMPERATURE,
                   "alpha": DISTILL_ALPHA, "epochs": work.epochs["distill"],
                   "loss": "alpha*T^2*KL(softmax(teacher/T) || softmax(student/T)) + (1-alpha)*CE(labels)"}
        return Candidate(self.name, student_arch, baked, {}, work.convert(baked, {}), None), details


class SeekStage:
    """Target seeking: when the best model so far misses a flash, arena, latency or energy target
    (energy per inference, or average power at the asked rate), find the largest model of its
    architecture's family that meets them all, and train it. Energy is estimated from each
    engine's latency (tinydeploy.optimize.engine_choice), so a model that misses it is shrunk
    until it is fast enough, or the engine that is fast enough is chosen.

    The family is shrunk by tinydeploy.optimize.fit (width by bisection, then the first stride
    doubles, then the last blocks go), each candidate costed untrained on every engine of the
    board (sizes and MACs don't depend on the weights). Returns (None, details) when nothing
    was needed, or when even the smallest model misses (the details name its cost and what it
    misses).
    """
    name = "seek"

    def run(self, work: Trainer, previous: Candidate) -> tuple[Candidate | None, dict]:
        best = previous
        missed = [t.name for t in best.metrics.targets if not t.met and t.name in COST_TARGETS]
        if not missed:
            return None, {"needed": False, "note": f"{best.stage} already meets the cost targets ({', '.join(_judged(best))})"}

        # Candidates are costed untrained. What training changes (a flatbuffer's quantization
        # parameters and folded biases; on an emulated board, the C engine's measured rather
        # than fitted latency) is carried over from the best model: each engine's flash and
        # latency are scaled by the best model's figure over its untrained twin's.
        twin = {c.engine: c for c in _untrained_costs(work, best.arch)[0]}
        scale = {}
        for trained in best.metrics.engines:
            ref = twin.get(trained.engine)
            if trained.unavailable or ref is None or ref.unavailable:
                continue
            scale[trained.engine] = (trained.flash_bytes / max(ref.flash_bytes, 1),
                                     trained.latency_ms / ref.latency_ms if ref.latency_ms else 1.0)
        tried: list[dict] = []

        def costed(arch: arch_lib.Arch) -> dict:
            untrained, macs = _untrained_costs(work, arch)
            options = [c.scaled(*scale.get(c.engine, (1.0, 1.0)), work.config.targets) for c in untrained]
            chosen, _ = engine_choice.choose(options)
            point = {"blocks": len(arch.blocks), "stride": arch.blocks[0].stride, "engine": chosen.engine,
                     "flash_bytes": chosen.flash_bytes, "arena_bytes": chosen.arena_bytes,
                     "latency_ms": chosen.latency_ms, "macs": macs, **_energy_point(chosen.energy),
                     "misses": [v.describe() for v in chosen.verdicts if not v.met] or
                               ([chosen.unavailable] if chosen.unavailable else []),
                     "architecture": arch.to_dict()}
            tried.append(point)
            return point

        fitted = fit.shrink_to_fit(best.arch, work.data, costed, lambda point: not point["misses"], drop_blocks=True)
        if fitted is None:
            smallest = tried[-1]
            return None, {"needed": True, "missed_by": best.stage, "missed": missed, "tried": tried,
                          "smallest": smallest,
                          "note": (f"even the smallest model of the family ({smallest['blocks']} blocks, stride "
                                   f"{smallest['stride']}, width {fit.MIN_WIDTH:g}) misses: "
                                   + "; ".join(smallest["misses"]))}
        chosen, width, retrained = fitted.arch, fitted.width, []
        while True:
            plain, _, _ = work.train_from_scratch(chosen, self.name)
            baked, _ = work.finetune(plain, chosen, {}, self.name, work.epochs["qat"], "seek")
            tflite = work.convert(baked, {})
            metrics = work.measure(tflite)
            over = [t.describe() for t in metrics.targets if not t.met and t.name in COST_TARGETS]
            if not over or width <= fit.MIN_WIDTH or len(retrained) == SEEK_RETRIES:
                break
            # Trained, it costs more than its untrained twin predicted (the weights choose
            # kernel paths, e.g. the C engine's fast requantization): narrower, and again.
            retrained.append({"width": round(width, 4), "misses": over})
            width = max(fit.MIN_WIDTH, width * SEEK_RETRY_SHRINK)
            chosen = fitted.family.scaled(width)
        details = {"needed": True, "missed_by": best.stage, "missed": missed, "width": round(width, 4),
                   "retrained_narrower": retrained,
                   "trained_to_untrained": {e: {"flash": round(f, 3), "latency": round(l, 3)}
                                            for e, (f, l) in scale.items()},
                   "architecture": chosen.to_dict(), "tried": tried,
                   "method": "bisection on the width multiplier, candidates costed untrained on every "
                             "engine of the board; then the first stride doubles and the last blocks go "
                             "while the narrowest misses"}
        return Candidate(self.name, chosen, baked, {}, tflite, metrics), details


def _judged(candidate: Candidate) -> list[str]:
    """The cost targets judged on a candidate, by name."""
    return [t.name for t in candidate.metrics.targets if t.name in COST_TARGETS]


def _energy_point(energy: dict | None) -> dict:
    """A seek candidate's energy estimate: per inference, the average power at the rate, the
    highest rate within the budget (nothing where the board has no power profile)."""
    if not energy or not energy["available"]:
        return {}
    return {"energy_uj": round(energy["energy_uj"], 4), "average_mw": energy["average_mw"],
            "max_rate_hz": energy["max_rate_hz"]}


def _untrained_costs(work: Trainer, arch: arch_lib.Arch) -> tuple[list, int]:
    """An architecture's cost on every engine of the board, untrained (sizes, MACs and the
    instructions the C engine runs don't depend on the weights' values), and its MACs."""
    model = arch_lib.untrained_model(arch, work.data)
    return (engine_choice.cost_all(model, work.config.board, work.config.targets,
                                   emulate_in=Path(work.config.out) / "engines"),
            sum(l.macs for l in counts.layer_costs(model)))


class NearestStage:
    """A nearest-prototype (1-NN) classifier of the training windows, in the normalized input
    space, with as many prototypes a class as the flash and latency targets allow (k-means
    centroids where a class has more windows). On a few dozen windows of a series it is
    often the better classifier, as the classical 1-NN baseline is; measured like every
    stage, and ranked with them."""
    name = "nearest"

    def run(self, work: Trainer, previous: Candidate | None) -> tuple[Candidate, dict]:
        data, n_classes = work.data, work.n_classes
        x, y = data.x_train, data.y_train
        # Slots for every labelled window of a class (validation too): the deployed model is made
        # again from all of them (pipeline._deployed), at the size measured here.
        per_class = int(np.bincount(np.concatenate([y, data.y_val]), minlength=n_classes).max())
        row_bytes = (int(np.prod(data.input_shape)) + 4) * n_classes  # int8 weights, int32 bias
        room = work.config.targets.max_model_kb * 1024 - NEAREST_OVERHEAD_BYTES
        per_class = max(1, min(per_class, int(room // row_bytes)))
        board, targets = work.config.board, work.config.targets
        while True:
            plain, arch, made = nearest.model(x, y, n_classes, per_class, work.config.seed)
            tflite = work.convert(plain, {})
            latency = figures.tflm_latency(parse_model(tflite), board).ms
            if per_class == 1 or (len(tflite) <= targets.max_model_kb * 1024 and latency <= targets.max_latency_ms):
                break
            per_class = max(1, int(per_class * 0.75))
        details = {"architecture": arch.to_dict(), "prototypes_per_class": per_class, **made,
                   "float_accuracy": round(work.float_accuracy(plain), 5),
                   "augmentation": augment.note(data.input_shape, nearest.MAX_SHIFT),
                   "note": "a nearest-prototype classifier in the normalized input space, from the training "
                           "windows, trained leave-one-out (tinydeploy.optimize.nearest); chosen, it is made "
                           "again from every labelled window and deployed"}
        metrics = work.measure(tflite)
        x_all = np.concatenate([x, data.x_val])
        y_all = np.concatenate([y, data.y_val])
        if len(data.x_val) < SMALL_VALIDATION and per_class >= np.bincount(y_all).max() and len(y_all) > 1:
            # The deployed classifier starts from every labelled window: its leave-one-out 1-NN
            # accuracy is a held-out figure on all of them, where validation has a few (pipeline._rank).
            metrics.loo_accuracy = round(nearest.leave_one_out(x_all, y_all), 5)
            metrics.loo_samples = int(len(x_all))
            details["leave_one_out"] = {"accuracy": metrics.loo_accuracy, "samples": metrics.loo_samples,
                                        "basis": "float 1-NN of every labelled window, each by its nearest other "
                                                 "one, in the prototypes' normalized space (before training)"}
        return Candidate(self.name, arch, plain, {}, tflite, metrics), details


# Every stage but final (the pipeline's choice), by name, in STAGES order.
STAGE_CLASSES = {stage.name: stage for stage in (ArchStage(), QatStage(), MixedStage(), ProgressiveStage(),
                                                  PruneStage(), DistillStage(), SeekStage(), NearestStage())}
