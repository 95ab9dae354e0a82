"""`tinydeploy search`: hardware-aware architecture search on Optuna.

Every candidate is costed before any training: it is built, converted to full
int8 (untrained weights: sizes don't depend on values) and loaded by the TFLM
interpreter, so its flash bytes and arena are measured, not guessed, and its
latency is estimated from its MACs and the board. Candidates over a budget are
rejected there (Optuna constraints), the rest get a short training run with
early stopping, and NSGA-II trades int8 accuracy (on TFLM) against estimated
latency and measured arena. The study lives in an RDB storage: SQLite in OUT
by default, or PostgreSQL for several workers on several machines.

The signal front end is decided first, as optimize decides it (--front-end: auto, none or a
pinned SPEC; tinydeploy.optimize.frontend_choice): every candidate then trains on its
features, under the budgets less its cost, and best_arch.json records it, so that
`optimize --search OUT` runs the same front end before the architecture found here.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from tinydeploy.optimize import architectures as arch_lib
from tinydeploy.optimize import fit
from tinydeploy.optimize.engine_choice import EMULATED_BOARD
from tinydeploy.codegen.engines import engine_for
from tinydeploy.costs import counts, liveness
from tinydeploy.core.boards import Board, get_board
from tinydeploy.core.bounds import check
from tinydeploy.core.data import Dataset
from tinydeploy.core.errors import BadInput, StepFailed
from tinydeploy.core.model import parse_model
from tinydeploy.core.outputs import run_folder, write_atomically
from tinydeploy.core.targets import Targets

SPACE_VERSION = 3  # bump when the search space changes: old studies are then refused
# (2: over-budget candidates are scaled to fit before training; small sets train as optimize does;
#  3: long windows get strided stems, dilated blocks and a head sized to the class count)
FILTERS = (8, 12, 16, 24, 32, 48, 64)
HEAD_UNITS = (0, 16, 32, 64)
SEARCH_EPOCHS = {"fast": 4, "default": 12}  # per trial; small sets get optimize's minimum of steps
DILATIONS = (1, 2, 4, 8)  # for stride-1 blocks after the first, on long windows


def sample_arch(trial, data: Dataset | None = None) -> arch_lib.Arch:
    """An architecture from Optuna's suggestions (the search space). With the data, the space
    follows its shape: windows of architectures.LONG_WINDOW steps or more get a strided stem
    (stride 2 to 8, kernels up to 11), strided blocks up to the fifth and dilated stride-1
    blocks; the last block is at least architectures.head_width(classes) wide."""
    long = data is not None and data.kind == "series" and data.input_shape[0] >= arch_lib.LONG_WINDOW
    n_blocks = trial.suggest_int("blocks", 2, 8)
    blocks = []
    for i in range(n_blocks):
        kind = trial.suggest_categorical(f"b{i}_kind", ("conv", "separable", "depthwise") if i else ("conv", "separable"))
        if long and i == 0:
            kernel = trial.suggest_categorical("b0_kernel", (5, 7, 11))
            stride = trial.suggest_categorical("b0_stride", (2, 4, 8))
        else:
            kernel = trial.suggest_categorical(f"b{i}_kernel", (3, 5))
            stride = trial.suggest_categorical(f"b{i}_stride", (1, 2)) if i < (5 if long else 2) else 1
        dilation = trial.suggest_categorical(f"b{i}_dilation", DILATIONS) if long and i and stride == 1 else 1
        blocks.append(arch_lib.Block(
            kind=kind,
            filters=trial.suggest_categorical(f"b{i}_filters", FILTERS),
            kernel=kernel,
            stride=stride,
            activation=trial.suggest_categorical(f"b{i}_act", ("relu", "relu6")),
            pool=trial.suggest_categorical(f"b{i}_pool", (False, True)),
            residual=trial.suggest_categorical(f"b{i}_residual", (False, True)) if i else False,
            dilation=dilation,
        ))
    if data is not None and blocks[-1].kind != "depthwise":
        blocks[-1] = replace(blocks[-1], filters=max(blocks[-1].filters, arch_lib.head_width(len(data.labels))))
    return arch_lib.Arch(tuple(blocks), trial.suggest_categorical("head_units", HEAD_UNITS), name="searched")


def fit_to_budgets(arch: arch_lib.Arch, data: Dataset, board: Board,
                   targets: Targets) -> tuple[arch_lib.Arch, "CandidateCost", str] | None:
    """An over-budget candidate scaled until it fits, so that the trial is spent training
    instead of rejected: its width, then its first stride (tinydeploy.optimize.fit.shrink_to_fit;
    its blocks stay). None when nothing fits.

    Returns:
        (the architecture that fits, its cost, what was changed in words), or None.
    """
    fitted = fit.shrink_to_fit(arch, data, lambda candidate: cost(candidate, data, board),
                               lambda c: all(v <= 0 for v in c.violations(targets).values()), drop_blocks=False)
    if fitted is None:
        return None
    stride = fitted.family.blocks[0].stride
    note = f"scaled to width {fitted.width:.3g}" + (f", first stride {stride}" if stride != arch.blocks[0].stride
                                                     else "")
    return replace(fitted.arch, name="searched"), fitted.cost, note


def smallest_arch() -> arch_lib.Arch:
    """The cheapest architecture the space holds (for the budget feasibility check)."""
    return arch_lib.Arch((arch_lib.Block("conv", 8, 3, 2, pool=True), arch_lib.Block("depthwise", 8, 3, 2, pool=True)),
                         0, name="smallest")


@dataclass
class CandidateCost:
    params: int
    flash_bytes: int  # measured: what the engine's firmware holds of the int8 model (tinydeploy.costs.figures)
    arena_bytes: int  # the engine's arena on the board (for TFLM: measured, with its kernels' scratch, 32-bit)
    activation_lower_bound: int
    macs: int
    latency_ms: float  # estimated for the board
    energy_uj: float | None = None  # estimated per inference (None: the board has no power profile)

    def violations(self, targets: Targets) -> dict[str, float]:
        """Budget name -> how far over it (<= 0 within)."""
        return {"max_model_kb": self.flash_bytes / 1024 - targets.max_model_kb,
                "max_arena_kb": self.arena_bytes / 1024 - targets.max_arena_kb,
                "max_latency_ms": self.latency_ms - targets.max_latency_ms}


def cost(arch: arch_lib.Arch, data: Dataset, board: Board, engine: str | None = None) -> CandidateCost:
    """Measure a candidate without training it: its figures on the board as the engine registry's
    cost gives them (tinydeploy.costs.figures), the same figures inspect and optimize report.

    Args:
        arch, data: the candidate and the data it is built for.
        board: the board it is costed on.
        engine: the engine to cost (default the board's first). The C engine's latency is its
            per-operator estimate: search runs no emulator.

    Raises:
        BadInput: an engine the board doesn't run, or one that can't run the candidate.
        StepFailed: TFLM cannot load the candidate.
    """
    model = arch_lib.untrained_model(arch, data)
    figures = engine_for(board, engine).cost(model, board, fitted=get_board(EMULATED_BOARD),
                                             why_fitted="search costs candidates without the emulator")
    return CandidateCost(counts.param_count(model), figures.flash_bytes, figures.arena_bytes,
                         liveness.activation_lower_bound(model), sum(l.macs for l in counts.layer_costs(model)),
                         figures.latency_ms, figures.energy.energy_uj)


def redact(url: str) -> str:
    """A storage URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _fingerprint(data: Dataset) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(data.x_train).tobytes())
    digest.update(np.ascontiguousarray(data.y_train).tobytes())
    return f"space-v{SPACE_VERSION}:{digest.hexdigest()[:16]}:{list(data.input_shape)}:{len(data.labels)}"


def open_study(storage: str, study: str, data: Dataset, seed: int, join: bool):
    """Create or load the study, refusing one made for other data or another space."""
    import warnings

    import optuna
    from sqlalchemy.exc import SQLAlchemyError
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Heartbeats let a live worker mark the trial of a killed one as failed.
            rdb = optuna.storages.RDBStorage(storage, heartbeat_interval=10, grace_period=30,
                                             engine_kwargs={"pool_pre_ping": True})
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise BadInput(f"cannot open the study storage {redact(storage)}: {type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:200]}") from exc
    sampler = optuna.samplers.NSGAIISampler(seed=None if join else seed)
    names = [s.study_name for s in optuna.study.get_all_study_summaries(rdb)]
    if join and study not in names:
        raise BadInput(f"no study '{study}' in {redact(storage)} to join; studies there: {', '.join(names) or 'none'}")
    handle = optuna.create_study(storage=rdb, study_name=study, load_if_exists=True, sampler=sampler,
                                 directions=["maximize", "minimize", "minimize"])
    expected = _fingerprint(data)
    found = handle.user_attrs.get("fingerprint")
    if found is None:
        handle.set_user_attr("fingerprint", expected)
    elif found != expected:
        raise BadInput(f"study '{study}' in {redact(storage)} was made for other data or another search space "
                       f"({found} vs {expected}); choose another --study")
    return handle


@dataclass
class SearchConfig:
    data: Dataset
    out: Path
    board: Board
    targets: Targets = Targets()
    trials: int | None = 10
    timeout: float | None = None
    storage: str | None = None
    study: str = "tinydeploy"
    seed: int = 0
    join: bool = False
    budget: str = "fast"
    force: bool = False  # write over files in out that tinydeploy did not write
    optuna_log: bool = False  # show Optuna's own log, failed trials' tracebacks included (--debug)
    front_end: str = "auto"  # auto, none, or a SPEC (frontend_choice.choose)


class CandidateFailed(Exception):
    """One candidate could not be costed, trained, converted or evaluated: its trial fails, the
    search goes on (Optuna catches this type only)."""


def _why(exc: BaseException) -> str:
    """A failure in one line: a tinydeploy error's own message, else its type and first line."""
    from tinydeploy.core.errors import TinyDeployError
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return text if isinstance(exc, TinyDeployError) else f"{type(exc).__name__}: {text}".rstrip(": ")


def _objective(config: SearchConfig, progress: Callable[[str, dict], None] | None):
    import optuna

    from tinydeploy.optimize.convert import to_int8_tflite
    from tinydeploy.runtime.evaluate import evaluate
    from tinydeploy.optimize.training import OptimizeConfig, Trainer
    data = config.data

    def objective(trial):
        try:
            return candidate(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of one candidate is that trial's failure
            why = _why(exc)
            trial.set_user_attr("failed", why)
            if progress:
                progress("failed", {"trial": trial.number, "why": why})
            raise CandidateFailed(why) from exc

    def candidate(trial):
        arch = sample_arch(trial, data)
        spec = json.dumps(arch.to_dict(), sort_keys=True)
        trial.set_user_attr("arch", arch.to_dict())
        # A finished twin is never trained again.
        for done in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if json.dumps(done.user_attrs.get("arch"), sort_keys=True) == spec:
                for key in ("costs", "constraints", "accuracy"):
                    trial.set_user_attr(key, done.user_attrs[key])
                for name, value in zip(("max_model_kb", "max_arena_kb", "max_latency_ms"),
                                       done.user_attrs["constraints"]):
                    trial.set_constraint(name, value)
                trial.set_user_attr("repeat_of", done.number)
                return tuple(done.values)
        try:
            measured = cost(arch, data, config.board)
            over = [k for k, v in measured.violations(config.targets).items() if v > 0]
            if over:
                fitted = fit_to_budgets(arch, data, config.board, config.targets)
                if fitted is not None:
                    arch, measured, note = fitted
                    trial.set_user_attr("arch", arch.to_dict())
                    trial.set_user_attr("scaled", {"over": over, "note": note})
        except StepFailed as exc:  # TFLM cannot run this candidate at all
            trial.set_user_attr("rejected", [f"TFLM: {exc}"])
            trial.set_user_attr("constraints", [1.0, 1.0, 1.0])
            if progress:
                progress("rejected", {"trial": trial.number, "over": ["TFLM cannot run it"]})
            raise optuna.TrialPruned("TFLM cannot run this candidate") from exc
        violations = measured.violations(config.targets)
        trial.set_user_attr("costs", measured.__dict__)
        trial.set_user_attr("constraints", list(violations.values()))
        for name, value in violations.items():  # NSGA-II ranks feasible trials first
            trial.set_constraint(name, value)
        if any(v > 0 for v in violations.values()):
            trial.set_user_attr("rejected", [k for k, v in violations.items() if v > 0])
            if progress:
                progress("rejected", {"trial": trial.number, "over": trial.user_attrs["rejected"]})
            raise optuna.TrialPruned("over budget before training, even scaled down")
        # Trained as optimize trains (a minimum of steps and augmentation on small sets).
        trainer = Trainer(OptimizeConfig(data=data, out=Path(config.out), board=config.board,
                                         budget=config.budget, seed=config.seed + trial.number))
        trainer.seed("arch")
        plain, _, _ = trainer.train_from_scratch(arch, "search", epochs=SEARCH_EPOCHS[config.budget])
        tflite = parse_model(to_int8_tflite(arch_lib.with_softmax(plain), data.x_train))
        accuracy = evaluate(tflite, data.x_val, data.y_val).accuracy
        trial.set_user_attr("accuracy", accuracy)
        if progress:
            progress("trial", {"trial": trial.number, "accuracy": accuracy, "latency_ms": measured.latency_ms,
                               "energy_uj": measured.energy_uj,
                               "arena_bytes": measured.arena_bytes})
        return accuracy, measured.latency_ms, float(measured.arena_bytes)

    return objective


OUTPUTS = ("best_arch.json", "search.html")  # what search writes into OUT
STUDY_FILE = "search.db"  # the study's SQLite storage, in OUT unless --storage names another


def search(config: SearchConfig, progress: Callable[[str, dict], None] | None = None) -> dict:
    """Run (or resume, or join) a search; write OUT/best_arch.json and OUT/search.html.

    Returns:
        The summary: trials, rejected, Pareto front and the chosen architecture.

    Raises:
        BadInput: no trials, unreachable storage, a mismatched study, or budgets
            that even the smallest architecture misses.
    """
    if config.trials is None and config.timeout is None:
        raise BadInput("give a budget: --trials N or --timeout SECONDS")
    for option, value in (("--trials", config.trials), ("--timeout", config.timeout), ("--seed", config.seed)):
        if value is not None:
            check(option, value)
    if config.budget not in SEARCH_EPOCHS:
        raise BadInput(f"unknown search budget '{config.budget}'. Budgets: {', '.join(SEARCH_EPOCHS)}")
    with run_folder(config.out, OUTPUTS + (() if config.storage else (STUDY_FILE,)), config.force) as out:
        return _search(config, out, progress)


def _search(config: SearchConfig, out: Path, progress: Callable[[str, dict], None] | None) -> dict:
    from tinydeploy.optimize.frontend_choice import choose, feature_dataset
    choice = choose(config.data, config.front_end, config.targets, config.board, config.seed, progress=progress)
    config = replace(config, data=feature_dataset(choice.front, config.data),
                     targets=choice.network_targets(config.targets, config.board))
    storage = config.storage or f"sqlite:///{(out / STUDY_FILE).resolve()}"
    study = open_study(storage, config.study, config.data, config.seed, config.join)
    floor = cost(smallest_arch(), config.data, config.board)
    over = {k: v for k, v in floor.violations(config.targets).items() if v > 0}
    if over:
        found = {"max_model_kb": f"{floor.flash_bytes / 1024:.1f} KB of flash",
                 "max_arena_kb": f"{floor.arena_bytes / 1024:.1f} KB of arena",
                 "max_latency_ms": f"{floor.latency_ms:.3f} ms"}
        raise BadInput("no architecture in the search space can meet " + ", ".join(
            f"--{k.replace('_', '-')} {getattr(config.targets, k):g} (the smallest needs {found[k]})" for k in over))
    import optuna
    verbosity = optuna.logging.get_verbosity()
    if not config.optuna_log:  # a failed trial is reported by progress and the summary, without Optuna's traceback
        optuna.logging.set_verbosity(optuna.logging.ERROR)
    first = len(study.get_trials(deepcopy=False))
    try:
        study.optimize(_objective(config, progress), n_trials=config.trials, timeout=config.timeout,
                       catch=(CandidateFailed,), gc_after_trial=True)
    finally:
        optuna.logging.set_verbosity(verbosity)
    summary = summarize(study, config, storage, choice)
    ran = study.get_trials(deepcopy=False)[first:]
    if ran and all(t.state == optuna.trial.TrialState.FAIL for t in ran):
        raise StepFailed(f"every trial of this run failed ({len(ran)}); the first: trial {ran[0].number}: "
                         f"{ran[0].user_attrs.get('failed', 'no reason recorded')}")
    return summary


def summarize(study, config: SearchConfig, storage: str, choice) -> dict:
    """The search's outcome (and OUT/best_arch.json, OUT/search.html). choice: the front end the
    candidates trained behind (frontend_choice.Choice), whose --front-end spec best_arch.json keeps."""
    import optuna
    from tinydeploy.optimize.frontend_choice import to_spec
    spec = to_spec(choice.front)
    out = Path(config.out)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    rejected = [t for t in trials if t.user_attrs.get("rejected")]
    front = [t for t in study.best_trials if all(c <= 0 for c in t.user_attrs.get("constraints", [1]))]
    feasible = [t for t in complete if all(c <= 0 for c in t.user_attrs.get("constraints", [1]))]
    summary = {
        "study": config.study, "storage": redact(storage), "board": config.board.name,
        "trials": len(trials), "complete": len(complete), "rejected_before_training": len(rejected),
        "rejection_rate": round(len(rejected) / len(trials), 3) if trials else None,
        "scaled_to_fit": sum(1 for t in trials if t.user_attrs.get("scaled")),
        "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials),
        "failed_trials": [{"trial": t.number, "why": t.user_attrs.get("failed", "stopped (a lost worker, say)")}
                          for t in trials if t.state == optuna.trial.TrialState.FAIL],
        "pareto_front": [{"trial": t.number, "accuracy": t.values[0], "latency_ms": t.values[1],
                          "arena_bytes": int(t.values[2]), "flash_bytes": t.user_attrs["costs"]["flash_bytes"],
                          "energy_uj": t.user_attrs["costs"].get("energy_uj"),
                          "arch": t.user_attrs["arch"]} for t in sorted(front, key=lambda t: -t.values[0])],
        "front_end": {"spec": spec, "how": choice.how, "reason": choice.reason,
                      "describe": "none: the network takes the raw window" if choice.front is None
                      else choice.front.describe(),
                      "network_targets": {"max_latency_ms": config.targets.max_latency_ms,
                                          "max_arena_kb": config.targets.max_arena_kb}},
    }
    if feasible:
        best = max(feasible, key=lambda t: (t.values[0], -t.values[1]))
        summary["best"] = {"trial": best.number, "accuracy": best.values[0], **best.user_attrs["costs"],
                           "arch": best.user_attrs["arch"], "front_end": spec}
        write_atomically(out / "best_arch.json", json.dumps(summary["best"], indent=2))
    from tinydeploy.core.report import search_html
    write_atomically(out / "search.html", search_html(summary, [
        {"trial": t.number, "accuracy": t.values[0], "latency_ms": t.values[1], "arena_bytes": t.values[2]}
        for t in complete]))
    return summary
