"""`tinydeploy optimize`: the progressive optimization pipeline.

Stages (tinydeploy.optimize.stages) run in order, each starting from the best model so far
(so a stage that costs too much accuracy does not drag the later ones down), and each is
measured the same way (Trainer.measure): the int8 model's accuracy on the TFLM interpreter over
the whole validation set, its flash bytes, the arena the board needs (the measured
TFLM arena with the board's kernel scratch, 32-bit; tinydeploy.costs.arena), its MACs
and its estimated latency on the board. Every stage's model and metrics are
kept in OUT/stages/, written atomically, so a rerun resumes where it stopped.
At the end the best model meeting every target (not simply the last) becomes
OUT/model.tflite; the report sets it beside float yardsticks on the same windows and, without
--min-accuracy, judges it against chance and 1-NN (tinydeploy.optimize.yardstick).

First, a signal front end is chosen (tinydeploy.optimize.frontend_choice; --front-end pins or
disables it). With one, the stages train and measure on its features (the dataset is
transformed once), under the latency and arena budgets less the front end's cost; the final
model carries the front end in its metadata (core.model.with_metadata), with the model's
input quantisation as its output, and it is validated and tested on the raw windows through
it (front end, then the int8 model on TFLM), as the board will run it. Every model's
metadata holds its labels.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tinydeploy.core.data import Dataset
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import parse_model, with_metadata
from tinydeploy.core.outputs import run_folder, write_atomically
from tinydeploy.optimize import architectures as arch_lib
from tinydeploy.optimize import energy_seek
from tinydeploy.optimize import frontend_choice, nearest
from tinydeploy.optimize import yardstick
from tinydeploy.optimize.metrics import StageMetrics
from tinydeploy.optimize.stages import STAGE_CLASSES
from tinydeploy.optimize.training import BUDGETS, STAGES, Candidate, OptimizeConfig, Progress, Trainer
from tinydeploy.runtime.evaluate import compare_with_reference, evaluate, wilson_interval

__all__ = ["BUDGETS", "STAGES", "OptimizeConfig", "OptimizeReport", "check_stages", "optimize"]


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
    runnable = m.flash_bytes is not None  # None: no engine of the board can run the model
    misses = sum(not t.met for t in m.targets)
    low_bits = sum(1 for b in candidate.bits.values() if b < 8)
    pooled = m.pooled_accuracy if m.pooled_accuracy is not None else 0.0
    return (m.meets_targets, runnable, -misses, _held_out_low(m), pooled, -low_bits, -(m.flash_bytes or 0))


def _held_out_low(m: StageMetrics) -> float:
    """The low end of the 95% Wilson interval of a stage's held-out accuracy (_rank)."""
    accuracy, n = ((m.loo_accuracy, m.loo_samples) if m.loo_accuracy is not None else (m.accuracy, m.val_samples))
    return wilson_interval(round(accuracy * n), n)[0] if n else accuracy


def _chosen_on(done: list[Candidate], best: Candidate, val: int) -> str:
    """What _rank compared, in words, for the report."""
    if best.metrics.pooled_accuracy is None:
        return "validation accuracy"
    loo = [c.metrics.loo_samples for c in done if c.metrics.loo_accuracy is not None]
    held_out = (f"the low end of the 95% interval of held-out accuracy (the nearest stage's leave-one-out 1-NN "
                f"accuracy over all {loo[0]} labelled samples, validation accuracy for the others)" if loo
                else "validation accuracy")
    return (f"{held_out}, ties broken on all {best.metrics.pooled_samples} labelled samples (the validation "
            f"set of {val} is small)")


def _best(done: list[Candidate]) -> Candidate:
    """The best stage so far (_rank)."""
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
    """What optimize did: the report (report.json's content), where the chosen model was
    written, whether it meets every target (and what it misses), and each stage's metrics."""
    report: dict
    model_path: Path
    met: bool
    missed: list[str]
    stages: list[StageMetrics] = field(default_factory=list)

    def explanation(self) -> str:
        """Why no model meets every target, and where the best one found was written; when
        accuracy is what missed, the accuracy each stage bought at its cost."""
        reached = ""
        if any(m.startswith("accuracy") for m in self.missed):
            reached = " Accuracy reached at each cost: " + "; ".join(
                f"{s.stage} {s.accuracy:.3f} at {s.flash_bytes:,} B, {s.latency_ms:.3f} ms"
                for s in self.stages if s.flash_bytes is not None) + "."
        return (f"no model meets every target; the best found ({self.report['chosen']['stage']}) was written to "
                f"{self.model_path}. Missed: {'; '.join(self.missed)}.{reached}")


def _read_json(path: Path):
    """A JSON file's content, or None when it is missing or not readable JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _resume_check(out: Path, config: OptimizeConfig, extra: dict | None = None) -> None:
    """Refuse a folder that holds a run with other settings (unless --force), then record ours
    (the config's fingerprint and extra: the front end)."""
    run_file = out / "run.json"
    fingerprint = {**config.fingerprint(), **(extra or {})}
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


def _resumed(folder: Path, chain: list[str], work: Trainer, data: Dataset) -> Candidate | None:
    """A stage finished by an earlier run of the same chain, or None (redo it: missing or damaged)."""
    stored = _read_json(folder / "metrics.json")
    if not isinstance(stored, dict) or stored.get("chain") != chain:
        return None
    tflite = (folder / "model.tflite").read_bytes()
    if "engines" not in stored:  # kept by a tinydeploy that costed TFLM only: measured again, the rest kept
        stored = {**stored, **work.measure(tflite).figures()}
    metrics = StageMetrics.from_dict(stored)
    arch = arch_lib.Arch.from_dict(metrics.arch)
    plain = arch_lib.plain_model(arch, data.input_shape, len(data.labels))
    plain.load_weights(str(folder / "plain.weights.h5"))
    work.histories[metrics.stage] = metrics.history
    return Candidate(metrics.stage, arch, plain, {k: int(v) for k, v in metrics.bits.items()}, tflite, metrics)


def _save_stage(folder: Path, candidate: Candidate) -> None:
    weights = folder.with_name(folder.name + ".weights.h5")
    weights.parent.mkdir(parents=True, exist_ok=True)
    candidate.plain.save_weights(str(weights))
    _write_atomically(folder, {"model.tflite": candidate.tflite, "plain.weights.h5": weights.read_bytes(),
                               "metrics.json": json.dumps(candidate.metrics.to_dict(), indent=2)})
    weights.unlink()


def _run_stages(config: OptimizeConfig, out: Path, work: Trainer, progress: Progress | None):
    """Every stage before final (STAGE_CLASSES), resuming the finished ones: (candidates, each
    stage's details)."""
    done: list[Candidate] = []
    details: dict[str, dict] = {}
    chain: list[str] = []
    stages = [s for s in config.stages if s != "final"]
    for position, stage in enumerate(stages):
        chain.append(stage)
        folder = out / "stages" / f"{position + 1:02d}-{stage}"
        kept = _resumed(folder, chain, work, config.data)
        if kept is not None:
            done.append(kept)
            details[stage] = kept.metrics.details
            if progress:
                progress("skip", {"stage": stage, "metrics": kept.metrics})
            continue
        if progress:
            progress("stage", {"stage": stage, "index": position + 1, "total": len(stages) + 1})
        started = time.perf_counter()
        work.seed(stage)
        candidate, info = STAGE_CLASSES[stage].run(work, _best(done) if done else None)
        details[stage] = info
        if candidate is None:  # a stage with nothing to add (seek, when the targets are met)
            if progress:
                progress("note", {"text": f"{stage}: {info.get('note', 'nothing to do')}"})
            continue
        # (seek and nearest measure their own: to check the trained model, to add a figure)
        measured = candidate.metrics if candidate.metrics is not None else work.measure(candidate.tflite)
        candidate.metrics = replace(measured, stage=stage, chain=list(chain), arch=candidate.arch.to_dict(),
                                    bits=candidate.bits, seconds=round(time.perf_counter() - started, 1),
                                    details=info, history=work.histories.get(stage, []),
                                    extra_histories=work.extra_histories(stage))
        _save_stage(folder, candidate)
        done.append(candidate)
        if progress:
            progress("done", {"stage": stage, "metrics": candidate.metrics})
    return done, details


# what optimize writes into OUT
OUTPUTS = ("run.json", "model.tflite", "report.json", "report.html", "frontend.png")


def optimize(config: OptimizeConfig, progress: Progress | None = None,
             front_end: str | Path | None = frontend_choice.AUTO) -> OptimizeReport:
    """Run (or resume) the optimization pipeline.

    Args:
        config: data, output folder, board, targets, budget, seed and stages.
        progress: optional callback receiving ("stage", ...), ("epoch", ...),
            ("skip", ...), ("note", ...) and ("done", ...) events (skip and done carry the
            stage's "metrics", a StageMetrics).
        front_end: "auto" (chosen per dataset), "none", or a SPEC or JSON file that pins one
            (tinydeploy.optimize.frontend_choice).

    Returns:
        The report; OUT/model.tflite, OUT/report.json, OUT/report.html and OUT/frontend.png
        are written.
    """
    with run_folder(config.out, OUTPUTS, config.force) as out:  # locked; the user's own files kept
        choice = frontend_choice.choose(config.data, front_end, config.targets, config.board, config.seed, progress)
        if progress and choice.front is not None:
            progress("note", {"text": f"front end: {choice.front.describe()} ({choice.reason})"})
        work = replace(config, data=frontend_choice.feature_dataset(choice.front, config.data),
                       targets=choice.network_targets(config.targets, config.board))
        _resume_check(out, work, choice.fingerprint())
        done, details = _run_stages(work, out, Trainer(work, progress), progress)
        total = len([s for s in config.stages if s != "final"]) + 1
        if progress:
            progress("stage", {"stage": "final", "index": total, "total": total})
        return _final(config, work, choice, out, done, details)


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
    return (to_int8_tflite(arch_lib.with_softmax(plain), x, seed=config.seed, per_tensor_dense=config.per_tensor_dense),
            f"the chosen nearest-prototype classifier made again, and trained the same way, from "
            f"{made['prototypes']} (training and validation); its validation figures are those of the "
            f"training windows' classifier")


def _with_meta(tflite: bytes, config: OptimizeConfig, front) -> bytes:
    """The model with tinydeploy's metadata: its labels and, with a front end, the front end
    (its output set to the model's input quantisation) and the raw window's [steps, channels]."""
    meta = {"labels": list(config.data.labels)}
    if front is not None:
        quant = parse_model(tflite).input_tensors[0].quantization
        meta["frontend"] = front.with_output(float(quant.scales[0]), int(quant.zero_points[0])).to_dict()
        meta["window"] = [int(v) for v in config.data.input_shape]
    return with_metadata(tflite, meta)


def _final(config: OptimizeConfig, work: OptimizeConfig, choice: frontend_choice.Choice, out: Path,
           done: list[Candidate], details: dict) -> OptimizeReport:
    """Choose, validate on TFLM (through the front end, on raw windows), cross-check with
    TFLite's reference kernels, and report. config holds the raw data and the user's targets,
    work the features the stages trained on and the network's targets."""
    best = _best(done)
    model = parse_model(_with_meta(best.tflite, config, choice.front))
    tflm_eval = evaluate(model, config.data.x_val, config.data.y_val)
    deployed, refit = _deployed(best, work)
    deployed = _with_meta(deployed, config, choice.front)
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
        test["basis"] = ("int8 model on the TFLM interpreter" + (", after the front end (its int8 features)"
                                                                 if choice.front is not None else "")
                         + "; the held-out test set, used for nothing else")
    chosen = best.metrics
    rows, checks = _accuracy_checks(config, chosen, tflm_eval.accuracy, test)
    missed = [t.describe() for t in chosen.targets if not t.met]
    if chosen.flash_bytes is None:
        missed.append(f"no engine of {config.board.name} runs the model ({chosen.engine_why})")
    if missed and (details.get("seek") or {}).get("smallest"):
        missed.append(details["seek"]["note"])
    rate = energy_seek.highest_rate(config.targets, chosen, [c.metrics for c in done], details.get("seek"))
    missed += [rate] if rate else []
    failed = [c for c in checks["verdicts"] if not c.met]
    missed += [c.describe() for c in failed]
    met = chosen.meets_targets and not failed
    if failed:
        missed.append(yardstick.what_would_help(details, len(config.data.x_train), checks["samples"],
                                                config.data.kind, choice.how, choice.front is not None))
    front_report = choice.to_dict(config.targets, config.board)
    plot = _frontend_plot(config, choice)
    if plot is not None:
        write_atomically(out / "frontend.png", plot)
        front_report["plot"] = str(out / "frontend.png")
    report = {
        "tinydeploy": "optimize", "seed": config.seed, "budget": config.budget, "board": config.board.name,
        "data": config.data.summary(), "labels": config.data.labels,
        "targets": {"max_arena_kb": config.targets.max_arena_kb, "max_model_kb": config.targets.max_model_kb,
                    "max_latency_ms": config.targets.max_latency_ms, "min_accuracy": config.min_accuracy,
                    "max_energy_uj": config.targets.max_energy_uj, "max_power_mw": config.targets.max_power_mw,
                    "rate_hz": config.targets.rate_hz},
        "frontend": front_report,
        "stages": [{k: v for k, v in c.metrics.to_dict().items() if k != "chain"} for c in done],
        "chosen": {"stage": best.stage, "model": str(out / "model.tflite"), "sha256": model.sha256,
                   "accuracy_tflm": round(tflm_eval.accuracy, 5), "validation": tflm_eval.to_dict(),
                   "chosen_on": _chosen_on(done, best, len(config.data.x_val)),
                   "reference_check": reference, **({"deployed": refit} if refit else {}),
                   "flash_bytes": chosen.flash_bytes, "arena_bytes": chosen.arena_bytes, "macs": chosen.macs,
                   "latency_ms": chosen.latency_ms, "latency_basis": chosen.latency_basis,
                   "model_bytes": chosen.model_bytes, "engine": chosen.engine, "engine_why": chosen.engine_why,
                   "energy": energy_seek.chosen_energy(chosen),
                   "engines": [e.to_dict() for e in chosen.engines],
                   "frontend": front_report["spec"], "metadata": sorted(model.meta)},
        "test": test,
        "seek": details.get("seek"),
        "yardsticks": [r.to_dict() for r in rows],
        "accuracy_checks": {**checks, "verdicts": [c.to_dict() for c in checks["verdicts"]]},
        "met": met, "missed": missed,
    }
    if choice.front is not None:
        report["chosen"]["validation"]["basis"] = ("the front end on the raw validation windows, then the int8 "
                                                   "model on the TFLM interpreter")
    write_atomically(out / "report.json", json.dumps(report, indent=2))
    from tinydeploy.core.report import optimize_html
    stages = [c.metrics for c in done]
    write_atomically(out / "report.html", optimize_html(report, stages, plot))
    return OptimizeReport(report, out / "model.tflite", met, missed, stages)


def _frontend_plot(config: OptimizeConfig, choice: frontend_choice.Choice) -> bytes | None:
    """A PNG of what the front end made of one training window of each class (up to 12), or
    None without a front end."""
    if choice.front is None:
        return None
    from tinydeploy.core.report import frontend_png
    y = np.asarray(config.data.y_train)
    classes = [c for c in range(len(config.data.labels)) if (y == c).any()][:12]
    windows = np.stack([config.data.x_train[int(np.flatnonzero(y == c)[0])] for c in classes])
    return frontend_png(windows, frontend_choice.features(choice.front, windows),
                        [config.data.labels[c] for c in classes], choice.front.describe())


def _accuracy_checks(config: OptimizeConfig, chosen: StageMetrics, validation: float,
                     test: dict | None) -> tuple[list, dict]:
    """The yardstick rows (tinydeploy.optimize.yardstick), and the default accuracy checks
    of the chosen model: on test when there is a test set, else on the held-out figure it was
    ranked on. An explicit --min-accuracy replaces them (it is judged on validation with every
    stage's targets): their verdicts list is then empty."""
    loo = (chosen.loo_accuracy, chosen.loo_samples) if chosen.loo_accuracy is not None else None
    rows, judged = yardstick.yardsticks(config.data, len(config.data.labels), validation,
                                        test["accuracy"] if test else None, loo, config.seed)
    checks = {"judged_on": judged.figure, "accuracy": round(judged.accuracy, 5), "samples": judged.samples,
              "chance": round(judged.chance, 5), "one_nn": judged.one_nn}
    if config.min_accuracy is not None:
        return rows, {**checks, "verdicts": [],
                      "replaced_by": f"--min-accuracy {config.min_accuracy:g} (judged on validation with the targets)"}
    return rows, {**checks, "verdicts": yardstick.default_checks(judged.accuracy, judged.samples, judged.chance,
                                                                 judged.one_nn, judged.figure)}
