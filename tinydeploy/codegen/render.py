"""`tinydeploy render`: an int8 model + a board -> a firmware project.

``render`` is pure: it returns ``{relative path: text}`` and touches no disk,
toolchain or port. What differs by engine (TFLM or the C engine) is in
tinydeploy.codegen.engines, what differs by framework (ESP-IDF, Arduino, a Makefile) in
tinydeploy.codegen.frameworks; values are prepared there and here, and the Jinja
templates in templates/ only loop and substitute. ``tinydeploy.toolchain.project`` writes
the files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tinydeploy import __version__
from tinydeploy.codegen import cgen, duty_cycle, package, partitions
from tinydeploy.core import protocol
from tinydeploy.runtime import tflm
from tinydeploy.core.boards import Board
from tinydeploy.core.data import label_problem
from tinydeploy.core.bounds import check
from tinydeploy.codegen.engines import ENGINES, SETUP_ERROR_BYTES, Prepared, engine_for
from tinydeploy.costs import figures
from tinydeploy.costs.figures import arena_size
from tinydeploy.codegen.frontend_source import frontend_sources
from tinydeploy.core.model_frontend import DeviceFrontend, device_frontend
from tinydeploy.core.errors import BadInput
from tinydeploy.codegen.frameworks import FRAMEWORKS, framework_for
from tinydeploy.core.manifest import PROJECT_FILE, project_file
from tinydeploy.core.model import Model
from tinydeploy.codegen.templating import BANNER, copied_firmware, environment

__all__ = ["ENGINES", "FRAMEWORKS", "RenderOptions", "arena_size", "device_info_format", "frontend_files",
           "frontend_info", "read_labels", "render"]

# What a model with a front end adds to any engine's project (docs/frontend.md): the front end's
# library and generated config, and the layer between protocol and model that td_main.c runs.
FRONTEND_RUNNER = ("td_frontend_runner.h", "td_frontend_runner.c")
FRONTEND_SOURCES = ("td_frontend.c", "td_frontend_config.c", "td_frontend_runner.c")


def frontend_files(front: DeviceFrontend) -> dict[str, str]:
    """The files a front end adds to a project, under src/."""
    return {**frontend_sources(front.front, front.window, folder="src/"), **copied_firmware(FRONTEND_RUNNER)}


# The info line is the info format with its two %s filled in: arena_used_bytes (at most 20
# digits) and setup_error (null, or the error quoted). Filled, it must fit the firmware's info
# buffer (TD_INFO_SIZE bytes with the NUL), or the host would read a cut JSON line.
INFO_LIMIT = protocol.INFO_SIZE - 1 - 20 - (SETUP_ERROR_BYTES + 1) + len("%s%s")


@dataclass(frozen=True)
class RenderOptions:
    """framework and engine default to the board's own (its profile's framework, its first engine)."""
    framework: str | None = None
    arena_margin_percent: float = 10.0
    labels: tuple[str, ...] = ()
    engine: str | None = None
    duty_cycle_hz: float | None = None  # the duty-cycled firmware at this rate (tinydeploy.codegen.duty_cycle)
    sleep: str | None = None  # its sleep mode; None: the one of least average power
    model_partition: bool = False  # the model in two flash slots (A/B) instead of the application


def frontend_info(model: Model) -> dict:
    """What info% adds for a model with a front end (docs/protocol.md): "window", the raw
    window [steps, channels] the device takes (int16 little-endian samples), and
    "frontend_ram_bytes", the RAM its front end holds beside the model's arena; {} without one."""
    front = device_frontend(model)
    if front is None:
        return {}
    return {"window": list(front.window), "frontend_ram_bytes": figures.frontend_arena(model)}


def device_info_format(model: Model, board: Board, framework, engine, arena_bytes: int) -> str:
    """The firmware's info JSON (protocol.device_info), with two %s for what only the board
    knows: arena_used_bytes (a number, or null when the model could not be set up) and
    setup_error (null, or a JSON string)."""
    info = protocol.device_info(model, arena_bytes, board=board.name, cpu_mhz=board.cpu_mhz, engine=engine.name,
                                timer=board.timer, framework=framework.name, **engine.info(board, framework),
                                tinydeploy=__version__, **frontend_info(model))
    text = ('{"arena_used_bytes":%s,"setup_error":%s,'
            + json.dumps(info, separators=(",", ":"))[1:].replace("%", "%%"))
    if len(text) > INFO_LIMIT:
        raise BadInput(f"the device info line would be {len(text)} characters (limit {INFO_LIMIT}: the firmware's "
                       f"info buffer is {protocol.INFO_SIZE} bytes, with room for a setup error)")
    return text


def _check_options(model: Model, options: RenderOptions, engine) -> None:
    engine.check_options(options.labels)
    check("--arena-margin", options.arena_margin_percent)
    if options.duty_cycle_hz is not None:
        check("--duty-cycle-hz", options.duty_cycle_hz)
    if options.sleep is not None:
        check("--sleep", options.sleep)
    if options.sleep is not None and options.duty_cycle_hz is None:
        raise BadInput(f"--sleep {options.sleep}: the sleep mode of a duty cycle; give its rate, --duty-cycle-hz")
    outputs = model.output_tensors[0].elements
    if options.labels and len(options.labels) != outputs:
        raise BadInput(f"{len(options.labels)} labels given but the model has {outputs} outputs")


def render(model: Model, board: Board, measured: tflm.ArenaMeasurement | None,
           options: RenderOptions = RenderOptions(), model_name: str = "model",
           prepared: Prepared | None = None) -> dict[str, str]:
    """Render the firmware project for a model on a board.

    Args:
        model: a full-int8 model whose operators the chosen engine supports.
        board: the board profile.
        measured: the model's TFLM arena as the host measures it (tinydeploy.runtime.tflm); required
            for the TFLM engine, where the board's arena is derived from it (tinydeploy.costs.arena),
            and shown for comparison with the C engine. Measured here when None.
        options: engine, framework, arena margin and class labels.
        model_name: a short name for messages and the project README.
        prepared: the engine's view of the model, when the caller has it already.

    Returns:
        {relative path: file text}.

    Raises:
        BadInput: float model, unsupported ops, an arena over the board's budget,
            an unknown engine or framework, or a label count that doesn't match the outputs.
    """
    engine = engine_for(board, options.engine)
    framework = framework_for(board, options.framework, engine.name)
    _check_options(model, options, engine)
    front = device_frontend(model)  # BadInput when the metadata's front end does not fit the model
    refused = framework.model_problems(model)
    if refused:
        raise BadInput(f"--framework {framework.name} can't run this model as the host does: " + "; ".join(refused))
    prepared = prepared or engine.prepare(model, measured)
    duty = (duty_cycle.plan(model, board, engine, prepared.measured, options.duty_cycle_hz, options.sleep)
            if options.duty_cycle_hz is not None else None)
    arena_bytes, need = engine.arena(prepared, board, framework, options.arena_margin_percent)
    budget = board.arena_budget_kb * 1024
    frontend_ram = figures.frontend_arena(model)
    if arena_bytes + frontend_ram > budget:
        made_of = (f" ({need.arena_bytes} with {need.kernels} kernels + {options.arena_margin_percent:g}% margin)"
                   if need is not None else "")
        fronted = f", and its front end {frontend_ram} bytes more," if frontend_ram else ""
        raise BadInput(f"the {engine.name} engine's arena is {arena_bytes} bytes{made_of}{fronted} but {board.name} "
                       f"has {budget} bytes of internal RAM for it")
    values = {
        "banner": BANNER, "board": board, "framework": framework.name, **framework.values(board),
        "model_name": cgen.comment(model_name),  # for comments and the README: user text, made inert
        "project_name": cgen.identifier("tinydeploy_" + re.sub(r"\W", "_", board.name, flags=re.ASCII)),
        "sha256": model.sha256, "model_bytes": model.size_bytes,
        "device_name": cgen.string_literal(f"tinydeploy-{board.name}"),
        "model_name_literal": cgen.string_literal(f"{model_name} {model.sha256[:12]}"),
        "baud": board.baud, "upload_speed": board.fast_baud, "env_name": board.name, "dir_hint": "DIR",
        "op_names": ", ".join(sorted({op.name for op in model.all_operators})),
        "labels": list(options.labels), "label_literals": [cgen.string_literal(x) for x in options.labels],
        "arena_bytes": arena_bytes, "arena_need": need, "margin_percent": f"{options.arena_margin_percent:g}",
        "info_format": cgen.string_literal(device_info_format(model, board, framework, engine, arena_bytes)),
        "board_defines": ["#define TD_FRONTEND 1"] if front else [],
        "frontend_sources": list(FRONTEND_SOURCES) if front else [],
        "main_source": duty_cycle.DUTY_MAIN if duty else duty_cycle.MAIN,
    }
    values.update({"slot_sources": [], "slot_defines": []})
    plan = prepared.lowered if engine.fixed_plan else None  # its code is the plan: the contract fixes it
    contract = package.contract(model, engine.name, arena_bytes, engine.info(board, framework).get("kernels"), plan)
    if options.model_partition:
        partition_values(values, model, plan, contract, framework, board)
    env = environment()
    files = engine.files(prepared, board, framework, values, env)
    if front:
        files.update(frontend_files(front))
    if options.model_partition:
        files.update(copied_firmware((*SLOT_FIRMWARE, *values["slot_platform"])))
        files["src/td_contract.c"] = env.get_template("common/td_contract.c.j2").render(**values)
    if duty:
        files.update(duty_cycle.files(duty, env, BANNER))
    files["src/td_board.h"] = env.get_template("common/td_board.h.j2").render(**values)
    files["src/td_board.c"] = env.get_template("common/td_board.c.j2").render(**values)
    slots = model_partition(files, values["partitions"]) if options.model_partition else None
    files[PROJECT_FILE] = project_file(BANNER, board, engine.name, framework.name, model.sha256, arena_bytes,
                                       contract, slots)
    return files


SLOT_FIRMWARE = ("td_slots.h", "td_slots.c", "td_main_slots.h", "td_main_slots.c")


def partition_values(values: dict, model: Model, lowered, contract: dict, framework, board: Board) -> None:
    """--model-partition's build values (render's, and export's): the slot firmware's sources
    and define, the custom partition table in sdkconfig and platformio.ini, the partitions, and
    the contract (package.contract) for td_contract.c. lowered: the model as the C engine runs
    it, when the engine's code is the plan (its constants then go in the slots too), else None."""
    if not hasattr(framework, "partition_values"):
        raise BadInput(f"--model-partition needs a flash driver for the slots, which the {framework.name} framework "
                       "lacks: render with --framework espidf, or for a board with its own [toolchain] slot_sources")
    added = framework.partition_values(board)
    dims = {role: contract[role]["shape"] for role in ("input", "output")}
    # the slots hold the image: header, model and, for an engine whose code is the plan, its constants
    image_bytes = model.size_bytes + partitions.HEADER_ROOM + (package.constants_bytes(lowered) if lowered else 0)
    parts = partitions.layout(board.flash_kb, image_bytes)
    plan = contract["plan_sha256"]
    values.update({
        "partitions": parts,
        # where the partitions are, for a platform that finds them by offset (a bare-metal flash driver)
        "board_defines": [*values["board_defines"], *(f"#define TD_FLASH_{p.name.upper().removeprefix('TD_')}_{what} "
                                                      f"0x{getattr(p, what.lower()):x}u"
                                                      for p in parts if p.name in partitions.SUBTYPES
                                                      for what in ("OFFSET", "SIZE"))],
        "contract_plan": ("kPlan", [f"0x{b:02x}" for b in bytes.fromhex(plan)]) if plan else ("NULL", []),
        "sdkconfig": [*values.get("sdkconfig", []), *added["sdkconfig"]],
        "extra": [*values.get("extra", []), *added["extra"]],
        "slot_sources": ["td_slots.c", "td_main_slots.c", *added["sources"], "td_contract.c"],
        "slot_platform": added["sources"], "slot_defines": ["TD_MODEL_PARTITION"],
        "contract": contract, "contract_ops": contract["ops"],
        "contract_kernels": cgen.string_literal(contract["kernels"]) if contract["kernels"] else "NULL",
        "contract_input": dims["input"] + [0] * (4 - len(dims["input"])), "contract_input_rank": len(dims["input"]),
        "contract_output": dims["output"] + [0] * (4 - len(dims["output"])), "contract_output_rank": len(dims["output"]),
    })


def model_partition(files: dict[str, str], parts: list) -> dict:
    """render --model-partition: the partition table with the model slots (codegen.partitions),
    added to files; returns the slots' partitions for tinydeploy.json."""
    files[partitions.FILE] = partitions.csv(parts, BANNER)
    return {p.name: p.to_dict() for p in parts if p.name in ("td_state", *partitions.SLOT_NAMES.values())}


def read_labels(path: str | Path) -> tuple[str, ...]:
    """Class labels from a text file (one per line) or a JSON file with a "labels" list
    (such as optimize's report.json). Labels are text or numbers, one line each."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{p}: no such labels file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{p}: the labels file is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if p.suffix != ".json":
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    expected = f"{p}: expected a JSON list of labels (text or numbers) or an object with a \"labels\" list"
    try:
        labels = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{expected} ({exc})") from exc
    labels = labels.get("labels") if isinstance(labels, dict) else labels
    if not isinstance(labels, list) or not all(isinstance(x, (str, int, float)) and not isinstance(x, bool)
                                               for x in labels):
        raise BadInput(expected)
    shown = tuple(str(x) for x in labels)
    problem = label_problem(shown)  # the data's rule: what deploy takes from the data, render takes here
    if problem:
        raise BadInput(f"{p}: {problem}")
    return shown
