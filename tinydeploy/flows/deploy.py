"""`tinydeploy deploy`: optimize -> render -> build -> flash -> bench -> verify in one go.

Without a port and with no board detected it renders the project, skips build
and flash (saying so), benches the virtual device, and labels which figures
are virtual. An emulated board (a profile with [emulator]) is built with its
cross compiler and benched in its emulator instead of being flashed. With a
farm (tinydeploy.device.farm), the image built once is written to every board with
esptool and each board is benched and judged, all in parallel; a board that
fails fails its own row, and the targets are met when every board meets them.

The model is judged as optimize judges it: without --min-accuracy its accuracy must clear
chance and not lie clearly below the 1-NN yardstick (tinydeploy.optimize.yardstick); those
verdicts join the device's, so a useless model ends the run missed (exit 1), with what would
help. A model with a front end is validated on the device with its int8 features
(runtime.evaluate.quantize_input runs the front end on the raw windows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tinydeploy.core.boards import Board
from tinydeploy.core.data import Dataset
from tinydeploy.core.targets import TargetResult, Targets

VALIDATE_SAMPLES = 50


@dataclass
class DeployReport:
    optimize: dict
    project: dict
    bench: dict
    verdicts: list[TargetResult]
    virtual: bool
    notices: list[str] = field(default_factory=list)
    farm: dict | None = None  # with a farm: tinydeploy.device.farm.summary of its rows
    advice: str = ""  # what would help, when an accuracy check missed

    def explanation(self) -> str:
        """Every verdict that missed, and what would help (for the exit message)."""
        missed = [v.describe() for v in self.verdicts if not v.met]
        return "targets missed: " + "; ".join(missed) + (f". {self.advice}" if self.advice else "")

    @property
    def met(self) -> bool:
        return all(v.met for v in self.verdicts)

    def to_dict(self) -> dict:
        return {"virtual": self.virtual, "notices": self.notices, "met": self.met,
                "verdicts": [v.to_dict() for v in self.verdicts], "bench": self.bench,
                "project": self.project,
                "optimize": {k: self.optimize.get(k) for k in ("chosen", "met", "missed", "frontend", "accuracy_checks")},
                **({"advice": self.advice} if self.advice else {}),
                **({"farm": self.farm} if self.farm is not None else {})}


def deploy(dataset: Dataset, data_source: str, board: Board, out: str | Path, targets: Targets = Targets(),
           port: str | None = None, budget: str = "default", seed: int = 0, min_agreement: float = 1.0,
           progress: Callable[[str, dict], None] | None = None, stages: tuple[str, ...] | None = None,
           farm: list | None = None, force: bool = False, front_end: str | Path = "auto",
           min_accuracy: float | None = None) -> DeployReport:
    """Run the whole pipeline.

    Args:
        dataset: training data (its source name is data_source).
        board: the board profile.
        out: folder for optimize/, firmware/ and bench/.
        targets: budgets.
        port: the board's serial port; detected when None; the virtual device when none is found.
        budget, seed: optimize's settings.
        min_agreement: verify's agreement target for on-device validation.
        progress: receives (event, info) as the stages go.
        farm: boards (tinydeploy.device.farm.FarmBoard) to flash, bench and judge instead of one.
        force: start over (optimize's stages redone) and write over files in out that
            tinydeploy did not write.
        front_end: optimize's --front-end ("auto", "none", a SPEC or a JSON file).
        min_accuracy: the smallest acceptable int8 validation accuracy; None: the default
            accuracy checks (above chance, not clearly below 1-NN) judge the model.
    """
    from tinydeploy.toolchain import flash as flash_lib
    from tinydeploy.codegen.engines import ENGINES
    from tinydeploy.optimize import OptimizeConfig, optimize
    from tinydeploy.toolchain.project import create_project
    from tinydeploy.codegen.render import RenderOptions
    from tinydeploy.device.verify import verify
    from tinydeploy.core.outputs import run_folder
    with run_folder(out, (), force) as out:  # one run at a time; each part claims the files it writes
        notices: list[str] = []

        def note(text: str) -> None:
            notices.append(text)
            if progress:
                progress("note", {"text": text})

        stage_list = {"stages": stages} if stages else {}
        result = optimize(OptimizeConfig(dataset, out / "optimize", board, targets, budget=budget, seed=seed,
                                         data_source=data_source, force=force, min_accuracy=min_accuracy,
                                         **stage_list), progress, front_end=front_end)
        accuracy, advice = _accuracy_verdicts(result.report, min_accuracy)
        if advice:
            note(f"the model's accuracy check missed; {advice}")
        model_path = result.model_path
        engine = result.report["chosen"]["engine"]  # the engine optimize chose for this board (and why)
        note(f"engine: {engine} ({result.report['chosen']['engine_why']})")
        project = create_project(model_path, board, out / "firmware",
                                 RenderOptions(labels=tuple(dataset.labels) if ENGINES[engine].labels else (),
                                               engine=engine), force)
        note(f"rendered {project['project']} ({project['engine']} engine, arena {project['arena_bytes']:,} bytes)")
        samples = (dataset.x_val[:VALIDATE_SAMPLES], dataset.y_val[:VALIDATE_SAMPLES])
        if farm is not None:
            summary, verdicts = _deploy_farm(board, project["project"], farm, out / "bench", model_path, samples,
                                             targets, min_agreement, note, force)
            return DeployReport(result.report, project, {}, accuracy + verdicts, False, notices, farm=summary,
                                advice=advice)
        if port is None and not board.emulated:
            port = flash_lib.attached_port()
        virtual = port is None and not board.emulated
        bench_result = _bench_on(board, project["project"], port, out / "bench", model_path, samples, note, force)
        results = bench_result.to_dict()
        estimate = result.report["chosen"]["latency_ms"] if virtual else None
        verdicts = verify(results, targets, min_agreement, latency_estimate_ms=estimate, board=board)
        return DeployReport(result.report, project, results, accuracy + verdicts, virtual, notices, advice=advice)


def _accuracy_verdicts(report: dict, min_accuracy: float | None) -> tuple[list[TargetResult], str]:
    """optimize's judgement of the model's accuracy, as verdicts: --min-accuracy on the int8
    validation accuracy when given, else the default checks (chance and 1-NN); and what would
    help when one missed (optimize's own advice)."""
    if min_accuracy is not None:
        chosen = report["chosen"]
        verdicts = [TargetResult("accuracy", chosen["accuracy_tflm"], min_accuracy, "",
                                 "measured (TFLM int8, validation set)", at_least=True)]
    else:
        verdicts = [TargetResult.from_dict(v) for v in report["accuracy_checks"]["verdicts"]]
    advice = ""
    if any(not v.met for v in verdicts):
        advice = next((m for m in report["missed"] if m.startswith("what would help")),
                      "what would help: a longer latency budget or a faster board, a signal front end "
                      "(--front-end), more data, a longer --budget")
    return verdicts, advice


def _deploy_farm(board: Board, project: str, boards: list, out: Path, model_path: Path, samples, targets: Targets,
                 min_agreement: float, note: Callable[[str], None],
                 force: bool = False) -> tuple[dict, list[TargetResult]]:
    """Build once, then flash (esptool), bench and judge every board of the farm in parallel:
    (the farm's summary, every board's verdicts named after it, a failed board's as a miss)."""
    from tinydeploy.device import farm as farm_lib
    from tinydeploy.toolchain.build import build
    from tinydeploy.core.errors import StepFailed
    note(f"building {project} with PlatformIO")
    images = build(project).firmware
    if not images:
        raise StepFailed(f"the build of {project} made no firmware.bin to flash")
    note(f"flashing {images[0]} to {len(boards)} boards with esptool, then benching them, in parallel")
    job = farm_lib.flash_then(farm_lib.flash_job(images[0], board_profile=board, force=force),
                              farm_lib.verify_job(targets, min_agreement, baud=board.baud, runs=20, warmup=2,
                                                  expect_model=model_path, samples=samples, force=force))
    rows = farm_lib.run(boards, out, job, force)
    return farm_lib.summary(rows), farm_lib.verdicts(rows)


def _bench_on(board: Board, project: str, port: str | None, out: Path, model_path: Path, samples,
              note: Callable[[str], None], force: bool = False):
    """Bench the rendered firmware where it can run: an emulated board in its emulator, a board
    on port once built and flashed, or (no board attached) the virtual device, saying so."""
    from tinydeploy.toolchain import flash as flash_lib
    from tinydeploy.device.bench import bench
    from tinydeploy.toolchain.build import build
    if board.emulated:
        from tinydeploy.device import emulate
        note(f"building {project} with {board.toolchain['cc']}")
        build(project)
        with emulate.start(project) as emulator:
            note(f"emulating {board.name}: {board.emulator['command'][0]} on {emulator.url}")
            return bench(emulator.url, out, runs=20, warmup=2, expect_model=model_path, samples=samples, reset=False,
                         force=force)
    if port is None:
        from tinydeploy.device.virtual_device import VirtualDevice
        note("no board attached: build and flash skipped; benching the VIRTUAL device (host TFLM). "
             "Its latency is host time, not board time; the latency verdict uses the board estimate")
        with VirtualDevice(model_path) as device:
            return bench(device.open_pty(), out, runs=20, warmup=2, expect_model=model_path, samples=samples,
                         reset=False, force=force)
    note(f"building {project} with PlatformIO")
    build(project)
    note(f"flashing {port}")
    flash_lib.flash(project, port)
    return bench(port, out, baud=board.baud, expect_model=model_path, samples=samples, force=force)
