"""Terminal presentation of results (rich). Only the CLI uses this module."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tinydeploy.core.boards import Board
from tinydeploy.core.names import TFLM
from tinydeploy.core.targets import TargetResult


def _n(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def boards_table(boards: dict[str, Board]) -> Table:
    table = Table(title="Boards", title_justify="left")
    for column in ("board", "chip", "CPU MHz", "SRAM KB", "arena budget KB", "flash KB", "build", "engines", "baud"):
        table.add_column(column, no_wrap=True,
                         justify="right" if column[0].isupper() or "KB" in column else "left")
    for b in boards.values():
        build = "cross gcc, emulated" if b.emulated else \
            ("cross gcc" if b.toolchain else f"pio {b.platformio['framework']}")
        table.add_row(b.name + (" (user, shadows a profile)" if b.shadows else ""), b.chip, _n(b.cpu_mhz), _n(b.sram_kb), _n(b.arena_budget_kb),
                      _n(b.flash_kb), build, ", ".join(b.engines), _n(b.baud))
    return table


def targets_table(results: list[TargetResult], title: str = "Targets") -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("target", "measured", "limit", "basis", "result"):
        table.add_column(column, justify="right" if column in ("measured", "limit") else "left")
    for r in results:
        verdict = Text("met", style="green") if r.met else Text("MISSED", style="bold red")
        relation = "≥ " if r.at_least else "≤ "
        note = f"; {r.note}" if r.note else ""
        if r.measured is None:  # no figure to judge: say why
            why = r.detail if r.basis == "unavailable" else f"{r.basis}: {r.detail}"
            table.add_row(r.name, "n/a", f"{relation}{r.limit:g} {r.unit}", Text(why + note), verdict)
            continue
        if r.detail:  # a check, not a figure: show what was compared
            table.add_row(r.name, "yes" if r.met else "no", "", Text(f"{r.basis}: {r.detail}"), verdict)
            continue
        table.add_row(r.name, f"{r.measured:g} {r.unit}", f"{relation}{r.limit:g} {r.unit}", Text(r.basis + note),
                      verdict)
    return table


def _quant(q: dict | None) -> str:
    if not q:
        return "-"
    if len(q["scale"]) == 1:
        return f"scale {q['scale'][0]:.6g}, zero point {q['zero_point'][0]}"
    return f"per-axis ({len(q['scale'])} scales, axis {q['axis']})"


def inspect_view(report: dict) -> Group:
    """The inspect report (as produced by InspectReport.to_dict) for the terminal."""
    head = Text.assemble(
        ("model ", "bold"), report["model"], "\n",
        f"sha256 {report['sha256']}\n",
        f"flash {_n(report['flash_bytes'])} bytes · {_n(report['params'])} parameters · ",
        ("int8" if report["int8"] else "float (not int8)", "green" if report["int8"] else "bold red"),
    )
    ops = Table(title=f"Operators ({report['operator_count']} in the graph)", title_justify="left")
    for column in ("op", "version", "count", "TFLM"):
        ops.add_column(column)
    for op in report["operators"]:
        ops.add_row(op["op"], str(op["version"]), str(op["count"]),
                    Text("yes", style="green") if op["tflm_supported"] else Text("NO", style="bold red"))
    io = Table(title="Inputs and outputs", title_justify="left")
    for column in ("", "name", "shape", "dtype", "quantization"):
        io.add_column(column)
    for kind in ("inputs", "outputs"):
        for t in report[kind]:
            io.add_row(kind[:-1], t["name"], "×".join(map(str, t["shape"])), t["dtype"], _quant(t["quantization"]))
    need = report.get("board_arena")
    layers = Table(title=f"Layers: {_n(report['macs'])} MACs in total", title_justify="left")
    scratch_column = f"scratch B ({need['kernels']})" if need else "scratch B"
    for column in ("#", "op", "output shape", "MACs", scratch_column):
        layers.add_column(column, justify="left" if column in ("op", "output shape") else "right")
    for layer in report["layers"]:
        layers.add_row(str(layer["index"]), layer["op"], "×".join(map(str, layer["output_shape"])), _n(layer["macs"]),
                       _n(layer.get("scratch_bytes", 0)) if need else "n/a")
    memory = Table(title="Memory", title_justify="left")
    memory.add_column("figure")
    memory.add_column("bytes", justify="right")
    memory.add_column("basis")
    arena = report["arena"]
    if need:
        memory.add_row(f"arena on {need['board']} ({need['framework']})", _n(need["arena_bytes"]), need["basis"])
        memory.add_row("  head: activations + scratch", _n(need["head_bytes"]),
                       f"kernel scratch: {_n(need['scratch_bytes'])} B in all, each buffer live only while its operator runs")
        memory.add_row("  tail: persistent data", _n(need["tail_bytes"]), "32-bit struct sizes")
    if arena:
        memory.add_row("TFLM tensor arena on this host (smallest that works)", _n(arena["arena_bytes"]),
                       arena["source"] + "; reference kernels, 64-bit structs")
        if arena["head_bytes"] is not None:
            memory.add_row("  head: activations", _n(arena["head_bytes"]), "recording allocator")
            memory.add_row("  tail: persistent data", _n(arena["tail_bytes"]), "recording allocator")
        for item in arena["breakdown"]:
            memory.add_row(f"    {item['what']}", _n(item["bytes"]), item["detail"])
    else:
        memory.add_row("TFLM tensor arena", "n/a", "not measurable: TFLM cannot load this model")
    memory.add_row("activation lower bound", _n(report["activation_lower_bound_bytes"]),
                   "largest sum of live tensors in execution order")
    lat = report["latency"]
    latency = Text(f"Latency: {lat['ms']:.3f} ms on {lat['board']} ({lat['basis']}) — "
                   "an ESTIMATE from the board profile's per-operator cycles, not a measurement")
    parts = [head, ops, io, layers, memory, latency]
    if report.get("frontend"):
        parts.append(frontend_view(report["frontend"]))
    return Group(*parts, energy_view(report["energy"]),
                 targets_table([TargetResult.from_dict(t) for t in report["targets"]]))


def frontend_view(share: dict) -> Table:
    """The front end's share of inspect's figures (InspectReport.frontend_share)."""
    table = Table(title=f"Front end: {share['describe']}; window {'×'.join(map(str, share['window']))} → "
                        f"features {'×'.join(map(str, share['features']))} (included in the figures above and "
                        "in the targets)", title_justify="left")
    for column in ("figure", "value", "basis"):
        table.add_column(column, justify="right" if column == "value" else "left")
    table.add_row("RAM beside the arena", f"{_n(share['ram_bytes'])} B",
                  f"scratch {_n(share['scratch_bytes'])} B + int16 window {_n(share['window_bytes'])} B, exact")
    table.add_row("flash", f"{_n(share['flash_bytes_estimate'])} B",
                  f"tables and structs {_n(share['table_bytes'])} B, exact; code ~{_n(share['code_bytes_estimate'])} "
                  "B, an estimate")
    shown = f" ({share['share_of_latency']:.0%} of the latency)" if share.get("share_of_latency") is not None else ""
    table.add_row("latency", f"{share['latency_ms']:.3f} ms{shown}", share["latency_basis"])
    return table


def energy_view(energy: dict):
    """Energy per inference, average power at the rate per sleep mode, and the highest rate within
    the budget (tinydeploy.costs.figures.Energy.to_dict), labelled with their basis."""
    if not energy["available"]:
        return Text(f"Energy: {energy['reason']}")
    estimated = energy["energy_basis"].startswith("estimate")
    table = Table(title=f"Energy on {energy['board']} — " + ("ESTIMATES from the board's power profile and the "
                                                            "latency estimate, not measurements"
                                                            if estimated else "measured per inference"),
                  title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("basis")
    table.add_row("energy per inference", f"{energy['energy_uj']:.3g} µJ", Text(energy["energy_basis"]))
    rate, detail = energy["rate_hz"], energy["detail"] or {}
    modes = (detail.get("rates") or [{}])[0].get("modes", [])
    for mode in modes:
        best = " (least)" if mode["mode"] == energy["mode"] else ""
        value = f"{mode['average_mw']:.3g} mW" if mode["possible"] else "impossible"
        table.add_row(f"average at {rate:g} Hz, {mode['name']}{best}", value,
                      Text(energy["power_basis"] if best else mode["reason"]))
    if not modes and energy["reason"]:  # a measured energy without the board's sleep figures
        table.add_row(f"average at {rate:g} Hz", "n/a", Text(energy["reason"]))
    if energy["budget_note"]:
        mode = next((m["name"] for m in detail["budget"]["modes"] if m["mode"] == energy["max_rate_mode"]), None)
        table.add_row(f"highest rate within {energy['budget_mw']:g} mW",
                      f"{energy['max_rate_hz']:.3g} Hz" if mode else "none",
                      Text(f"{mode} between inferences; {energy['power_basis']}" if mode else energy["budget_note"]))
    return table


def optimize_table(report: dict) -> Table | Group:
    """Each stage's figures, then (when the report has them) the yardsticks beside the deployed model."""
    stages = _stages_table(report)
    yardsticks = yardstick_table(report)
    return stages if yardsticks is None else Group(stages, yardsticks)


def _stages_table(report: dict) -> Table:
    from tinydeploy.optimize.metrics import StageMetrics
    from tinydeploy.runtime.evaluate import wilson_interval
    table = Table(title=f"optimize: {report['data']['name']} on {report['board']} "
                        f"(budget {report['budget']}, seed {report['seed']})", title_justify="left")
    stages = [StageMetrics.from_dict(s) for s in report["stages"]]
    pooled = any(s.pooled_accuracy is not None for s in stages)
    val = report["data"]["val"]
    columns = ["stage", f"int8 val acc (TFLM, n={val}, 95% CI)"] + (["all samples"] if pooled else [])
    front = report.get("frontend")
    if front:  # what the network's input is, and its cost beside the stages' (which are the network's)
        cost = front.get("cost") or {}
        spent = (f"; ~{cost['latency_ms_estimate']:.3f} ms and {cost['ram_bytes']:,} B RAM of the budgets, the "
                 "stages' figures are the network's" if "latency_ms_estimate" in cost else "")
        table.caption = f"front end ({front['how']}): {front['spec']} — {front['describe']}{spent}"
        table.caption_justify = "left"
    for column in (*columns, "engine", "flash B", "arena B (board)", "MACs", "latency ms (est.)", "targets", "s"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    chosen = report["chosen"]["stage"]
    for s in stages:
        mark = " ◀ chosen" if s.stage == chosen else ""
        low, high = wilson_interval(round(s.accuracy * val), val)
        accuracy = [f"{s.accuracy * 100:.1f}% ({low * 100:.0f}-{high * 100:.0f})"]
        if s.loo_accuracy is not None:  # what _rank compares for this stage
            accuracy[0] += f"; ranked on leave-one-out {s.loo_accuracy * 100:.1f}% (n={s.loo_samples})"
        if pooled:
            accuracy.append(f"{s.pooled_accuracy * 100:.1f}%" if s.pooled_accuracy is not None else "")
        table.add_row(s.stage + mark, *accuracy, s.engine, _n(s.flash_bytes),
                      _n(s.arena_bytes), _n(s.macs), f"{s.latency_ms:.3f}",
                      Text("met", style="green") if s.meets_targets else Text("missed", style="red"),
                      f"{s.seconds:g}")
    return table


class StageProgress:
    """A progress display for staged work: one bar for stages, one for epochs."""

    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        self.console = console
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)
        self.stages = None
        self.epochs = None

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def __call__(self, kind: str, info: dict) -> None:
        if kind == "stage":
            if self.stages is None:
                self.stages = self.bar.add_task("stages", total=info["total"], info="")
            self.bar.update(self.stages, completed=info["index"] - 1, info=info["stage"])
        elif kind == "epoch":
            if self.epochs is None:
                self.epochs = self.bar.add_task("epochs", total=info["epochs"], info="")
            logs = info["logs"]
            acc = f"val acc {logs['val_accuracy'] * 100:.1f}%" if "val_accuracy" in logs else ""
            self.bar.update(self.epochs, total=info["epochs"], completed=info["epoch"],
                            info=f"{info['stage']} {acc}")
        elif kind in ("done", "skip"):
            m = info["metrics"]  # a StageMetrics
            verb = "skipped (already done)" if kind == "skip" else "done"
            cost = (f"{m.flash_bytes:,} B flash · {m.arena_bytes:,} B arena" if m.flash_bytes is not None
                    else f"no engine of the board runs it: {m.engine_why}")
            self.console.print(f"{info['stage']}: {verb} · int8 accuracy {m.accuracy * 100:.2f}% · {cost}")
        elif kind == "note":
            self.console.print(info["text"])


def bench_table(results: dict) -> Table:
    virtual = results.get("virtual")
    title = "Bench" + (" — VIRTUAL device (host TFLM; latency is host time, not board time)" if virtual else "")
    table = Table(title=title, title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("basis")
    device = results.get("device") or {}
    from tinydeploy.codegen.engines import ENGINES
    engine = ENGINES.get(device.get("engine", TFLM))
    runtime, arena_basis = engine.on_device(device) if engine else (f"engine {device.get('engine')}", "reported")
    table.add_row("board", str(device.get("board", "?")), runtime)
    table.add_row("model", f"{results.get('model_bytes') or 0:,} B", f"sha256 {str(results.get('model_sha256'))[:16]}…")
    table.add_row("arena (configured)", f"{results.get('arena_bytes') or 0:,} B", "firmware constant")
    used = results.get("arena_used_bytes")
    table.add_row("arena_used_bytes()", f"{used:,} B" if used is not None else "not set up", arena_basis)
    counts = results.get("latency_instructions")
    if counts:
        for key in ("min", "median", "max"):
            table.add_row(f"instructions {key}", f"{counts[key]:,.0f}", counts["basis"] if key == "min" else "")
    latency = results.get("latency_us")
    if latency:
        for key in ("min", "median", "mean", "p90", "max"):
            table.add_row(f"latency {key}", f"{latency[key]:,} µs", latency["basis"] if key == "min" else "")
    validation = results.get("validation")
    if validation:
        table.add_row("top-1 agreement", f"{validation['top1_agreement'] * 100:.1f}%",
                      f"{validation['samples']} samples vs {validation.get('reference', 'host TFLM')}")
        counts = validation.get("output_diff_lsb_counts")
        spread = ", ".join(f"{k} LSB: {n:,}" for k, n in counts.items()) if counts else "int8 outputs"
        table.add_row("largest output difference", f"{validation['max_output_diff_lsb']} LSB",
                      f"measured, {validation.get('kernels', '?')} kernels; outputs by difference: {spread}")
        table.add_row("device accuracy", f"{validation['device_accuracy'] * 100:.1f}%", "against the labels")
    power = results.get("power")
    if power:
        if power.get("energy_uj") is not None:
            table.add_row("energy per inference", f"{power['energy_uj']:.4g} µJ",
                          f"{power['basis']}: {power['monitor']}, {power['windows']} marked windows, "
                          f"{power['sample_rate_hz'] / 1000:g} kS/s")
            table.add_row("current while inferring", f"{power['active_ma']:.4g} mA",
                          f"{power['basis']}, at {power['voltage_v']:g} V")
            idle = power.get("idle_ma")
            table.add_row("idle current after", f"{idle:.4g} mA" if idle is not None else "n/a",
                          f"{power['basis']}, {power['idle_s']:.2g} s" if idle is not None else "too little idle recorded")
        else:
            table.add_row("energy per inference", "n/a", f"{power.get('monitor', 'power monitor')}: {power.get('error')}")
    if results.get("error"):
        table.add_row("error", Text("run stopped", style="red"), results["error"])
    return table


def engine_arena_table(summary: dict):
    """The three arena figures of a C-engine render, side by side."""
    from rich.table import Table
    table = Table(title="Arena")
    table.add_column("figure")
    table.add_column("bytes", justify="right")
    table.add_column("basis")
    table.add_row("C engine", f"{summary['arena_bytes']:,}", "static plan: fixed offsets; a layer may write over input it has read")
    tflm = summary.get("tflm_arena_bytes")
    table.add_row("TFLM", f"{tflm:,}" if tflm else "n/a", "tflite-micro interpreter on this host (measured)"
                  if tflm else "TFLM cannot load this model")
    table.add_row("lower bound", f"{summary['lower_bound_bytes']:,}",
                  "largest sum of live activation tensors, the tensor-level bound")
    return table


def optimize_lines(report: dict, out) -> list[str]:
    """What optimize chose and why, below its table."""
    from tinydeploy.runtime.evaluate import describe_accuracy
    chosen, validation = report["chosen"], report["chosen"]["validation"]
    lines = [f"chosen: {chosen['stage']} on {chosen['chosen_on']}; int8 validation accuracy "
             f"{describe_accuracy(validation['accuracy'], validation['samples'])}",
             f"engine: {chosen['engine']} ({chosen['engine_why']})"]
    energy = chosen.get("energy")
    if energy and energy.get("available"):  # estimates from the chosen engine's latency (docs/energy.md)
        mode = f", {energy['mode_name']} between" if energy.get("mode_name") else ""
        average = f"{energy['average_mw']:.4g} mW" if energy.get("average_mw") is not None else "no mode keeps it"
        lines.append(f"energy (estimate): {energy['energy_uj']:.4g} µJ per inference; {average} on average at "
                     f"{energy['rate_hz']:g} Hz{mode}; {energy['budget_note']}")
    if report.get("test"):
        lines.append(f"held-out test accuracy (once, chosen model only): "
                     f"{describe_accuracy(report['test']['accuracy'], report['test']['samples'])}")
    lines += _check_lines(report.get("accuracy_checks"))
    lines.append(f"wrote {chosen['model']} ({chosen['stage']}), {out}/report.json and {out}/report.html")
    return lines


def _check_lines(checks: dict | None) -> list[str]:
    """The default accuracy checks' verdicts (tinydeploy.optimize.yardstick), or what replaced them."""
    if not checks:
        return []
    if checks.get("replaced_by"):
        return [f"accuracy checks vs chance and 1-NN: replaced by {checks['replaced_by']}"]
    return [f"{v['target']}: {'met' if v['met'] else 'MISSED'} — {v['detail']}" for v in checks["verdicts"]]


def yardstick_table(report: dict) -> Table | None:
    """The deployed int8 model beside each yardstick on the same windows, or None (an older report)."""
    rows = report.get("yardsticks")
    if not rows:
        return None
    table = Table(title="Yardsticks (float, never deployed) on the same windows as the deployed int8 model",
                  title_justify="left")
    for column in ("yardstick", "windows", "fitted on", "yardstick acc", "deployed int8 acc", "ratio"):
        table.add_column(column, justify="right" if "acc" in column or column in ("windows", "ratio") else "left")
    for r in rows:
        deployed = "" if r["deployed_accuracy"] is None else f"{r['deployed_accuracy'] * 100:.1f}%"
        if r["accuracy"] is None:
            table.add_row(r["name"], f"{r['on']} ({r['samples']})", r["reference"], r["note"], deployed, "")
            continue
        ratio = r["ratio"]
        shown = Text(f"{ratio:.2f}", style="red" if ratio is not None and ratio < 1 else "green") \
            if ratio is not None else Text("")
        table.add_row(r["name"], f"{r['on']} ({r['samples']})", r["reference"], f"{r['accuracy'] * 100:.1f}%",
                      deployed, shown)
    return table


def arch_lines(arch, figures: dict) -> list[str]:
    """An architecture's blocks, then its costs (search --show)."""
    lines = [f"block {i}: {b.kind} {b.filters} filters {b.kernel}x{b.kernel} stride {b.stride} {b.activation}"
             + (" +pool" if b.pool else "") + (" +residual" if b.residual else "") for i, b in enumerate(arch.blocks)]
    lines.append(f"head units {arch.head_units}; " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}"
                                                               for k, v in figures.items()))
    return lines


def search_trial_line(kind: str, info: dict) -> str | None:
    """One line per search trial, or None for events that need none."""
    if kind == "note":
        return info["text"]
    if kind == "rejected":
        return f"trial {info['trial']}: rejected before training (over {', '.join(info['over'])})"
    if kind == "failed":
        return f"trial {info['trial']}: failed ({info['why']}); the search goes on"
    if kind == "trial":
        energy = info.get("energy_uj")
        return (f"trial {info['trial']}: int8 accuracy {info['accuracy'] * 100:.1f}% · {info['latency_ms']:.3f} ms "
                + (f"est. · {energy:.3g} µJ est. · " if energy is not None else "est. · ")
                + f"{info['arena_bytes']:,} B arena")
    return None


def search_lines(summary: dict, out) -> list[str]:
    """A search's outcome."""
    rate, best = summary["rejection_rate"], summary.get("best")
    front = summary.get("front_end")
    return [*([f"front end ({front['how']}): {front['spec']}; the network's budgets: "
               f"{front['network_targets']['max_latency_ms']:g} ms, {front['network_targets']['max_arena_kb']:g} KB "
               "of arena"] if front and front["spec"] != "none" else []),
            f"{summary['trials']} trials ({summary['complete']} trained, {summary['scaled_to_fit']} of them scaled "
            f"down to fit the budgets; {summary['rejected_before_training']} rejected before training"
            + (f", {rate:.0%}" if rate is not None else "")
            + (f"; {summary['failed']} failed" if summary.get("failed") else "")
            + f"); Pareto front: {len(summary['pareto_front'])}",
            *[f"  trial {t['trial']} failed: {t['why']}" for t in summary.get("failed_trials", [])[:5]],
            f"best within budget: trial {best['trial']}, {best['accuracy'] * 100:.2f}% -> {out}/best_arch.json"
            if best else "no trial met every budget yet",
            f"report: {out}/search.html"]


def layers_table(profile: dict) -> Table:
    """bench --profile: each layer's time on the device, its share, and the board's estimate."""
    table = Table(title=f"Per layer — {profile['basis']}", title_justify="left")
    for column in ("#", "op", "output", "MACs", "ticks", "µs", "share", "estimate µs"):
        table.add_column(column, justify="left" if column in ("op", "output") else "right")
    for layer in profile["layers"]:
        table.add_row(str(layer["index"]), layer.get("op", ""), "×".join(map(str, layer.get("shape", []))),
                      _n(layer["macs"]) if "macs" in layer else "", _n(layer["ticks"]),
                      "" if layer["us"] is None else f"{layer['us']:,}",
                      "" if layer["share"] is None else f"{layer['share'] * 100:.1f}%",
                      f"{layer['estimate_us']:,}" if "estimate_us" in layer else "")
    return table


def calibration_lines(calibration: dict) -> list[str]:
    """What calibrate fitted, what it could not, and the estimates' error before and after."""
    lines = [f"{op}: {fit['per_unit']:g} cycles per unit + {fit['per_output']:g} per output + {fit['fixed']:g} fixed "
             f"({fit['layers']} layers; {fit['how']})" for op, fit in calibration["fitted"].items()]
    lines += [f"{op}: uncalibrated ({why}); the profile's own coefficients stay" for op, why
              in calibration["uncalibrated"].items()]

    def shown(figures: dict) -> str:
        def pct(value):
            return "n/a" if value is None else f"{value * 100:.1f}%"
        return (f"median layer error {pct(figures['median_layer_error'])}, largest {pct(figures['max_layer_error'])}; "
                f"whole-network error {pct(figures['median_network_error'])} (median over runs)")

    lines += [f"before: {shown(calibration['error_before'])}", f"after:  {shown(calibration['error_after'])}",
              f"wrote {calibration['profile']}: use it with --boards-dir {Path(calibration['profile']).parent}"]
    return lines


def farm_tables(summary: dict, title: str) -> list[Table]:
    """A farm's rows (one a board), and per board profile the spread of its boards' latencies."""
    rows = Table(title=title, title_justify="left")
    for column in ("board", "port", "profile", "result", "median µs", "arena used B", "verdicts / error"):
        rows.add_column(column, justify="right" if column.endswith(("µs", "B")) else "left")
    for b in summary["boards"]:
        verdicts = b.get("verdicts")
        detail = b["error"] or (", ".join(f"{v['target']} {'met' if v['met'] else 'MISSED'}" for v in verdicts)
                                if verdicts else "")
        rows.add_row(b["name"], b["port"], b["board"] or b["profile"] or "?", "ok" if b["ok"] else "FAILED",
                     _n(b["latency_median_us"]) if b["latency_median_us"] is not None else "",
                     _n(b["arena_used_bytes"]) if b["arena_used_bytes"] is not None else "", detail)
    spread = Table(title="Across boards of a profile", title_justify="left")
    for column in ("profile", "boards", "median of medians µs", "spread µs"):
        spread.add_column(column, justify="left" if column == "profile" else "right")
    for a in summary["aggregate"]:
        spread.add_row(a["board"], str(a["boards"]), f"{a['median_of_medians_us']:,.4g}", f"{a['spread_us']:,.4g}")
    return [rows, spread]
