"""One optimize run of every stage on the digits (the fast budget), and what it must show:
each stage measured on the TFLM interpreter, the int8 model checked against the reference,
bits, pruning and distillation really applied, the reports, resuming and refusing a rerun
with other settings. Its own module, so that under pytest-xdist it runs once, on one
worker (tests/conftest.py)."""

import json

import pytest

from tinydeploy.core import data
from tinydeploy.core.boards import get_board
from tinydeploy.core.errors import BadInput
from tinydeploy.runtime.evaluate import evaluate
from tinydeploy.core.model import load_model, with_metadata
from tinydeploy.optimize import OptimizeConfig, optimize
from tinydeploy.core.targets import Targets

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def digits16():
    return data.load("digits", image_size=16, seed=0)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, digits16):
    """One full run of every stage on the fast budget, with its progress events."""
    out = tmp_path_factory.mktemp("optimize")
    events = []
    config = OptimizeConfig(digits16, out, get_board("esp32-s3-devkitc-1"), budget="fast", seed=0)
    result = optimize(config, lambda kind, info: events.append((kind, info.get("stage"))))
    return config, result, events


def stage(result, name):
    return next(s for s in result.report["stages"] if s["stage"] == name)


def test_every_stage_ran_and_was_measured(pipeline, digits16):
    config, result, events = pipeline
    names = [s["stage"] for s in result.report["stages"]]
    assert names == ["arch", "qat", "mixed", "progressive", "prune", "distill", "nearest"]
    for s in result.report["stages"]:
        assert 0 <= s["accuracy"] <= 1 and s["flash_bytes"] > 0 and s["arena_bytes"] > 0 and s["macs"] > 0
        assert len(list((config.out / "stages").glob(f"*-{s['stage']}/model.tflite"))) == 1
    assert ("epoch", "arch") in events and ("done", "nearest") in events
    chosen = result.report["chosen"]
    staged = (next((config.out / "stages").glob(f"*-{chosen['stage']}")) / "model.tflite").read_bytes()
    # the chosen stage's model with its labels in the metadata, or (a nearest-prototype classifier)
    # the same made from every labelled window
    labelled = with_metadata(staged, {"labels": digits16.labels})
    assert ((config.out / "model.tflite").read_bytes() == labelled) == ("deployed" not in chosen)
    assert load_model(config.out / "model.tflite").labels == tuple(digits16.labels)
    assert result.report["frontend"]["chosen"] is None and result.report["frontend"]["how"] == "auto"


def test_reported_accuracy_is_the_int8_model_on_tflm(pipeline, digits16):
    config, result, _ = pipeline
    for name in ("arch", "qat"):
        folder = next((config.out / "stages").glob(f"*-{name}"))
        measured = evaluate(load_model(folder / "model.tflite"), digits16.x_val, digits16.y_val)
        assert round(measured.accuracy, 5) == stage(result, name)["accuracy"]
    qat = stage(result, "qat")["details"]
    assert {"float_accuracy", "ptq_accuracy"} <= set(qat)


def test_final_model_is_full_int8_and_checked_against_reference(pipeline):
    config, result, _ = pipeline
    model = load_model(config.out / "model.tflite")
    assert model.is_int8
    check = result.report["chosen"]["reference_check"]
    assert check["samples"] == len(config.data.x_val)
    assert check["top1_agreement"] >= 0.99


def test_mixed_precision_lists_bits_and_packs_int4(pipeline):
    _, result, _ = pipeline
    details = stage(result, "mixed")["details"]
    assert set(details["bits"].values()) <= {4, 8}
    assert set(details["bits"]) == set(details["sensitivity"])
    packing = details["packing"]
    four_bit = {layer for layer, bits in details["bits"].items() if bits == 4}
    # Every 4-bit layer is accounted for: packed two per byte, or kept in int8 storage (and why).
    assert set(packing["int4_layers"]) | set(packing.get("4bit_in_int8_storage", [])) == four_bit
    assert packing["note"]
    if packing["int4_layers"]:  # packed weights: less flash, and an unpack scratch in the arena
        assert packing["flash_packed_bytes"] < packing["flash_int8_bytes"]
        assert packing["arena_packed_bytes"] > packing["arena_int8_bytes"]


def test_progressive_schedule_really_changes_bits(pipeline):
    _, result, _ = pipeline
    details = stage(result, "progressive")["details"]
    assert details["schedule_bits_per_epoch"] == [8, 6, 4]
    assert "fixed_4bit_accuracy" in details


def test_structured_pruning_shrinks_flash_and_macs(pipeline):
    _, result, _ = pipeline
    after = stage(result, "prune")
    details = after["details"]
    before = stage(result, details["input_stage"])
    assert after["flash_bytes"] < before["flash_bytes"] == details["flash_before_bytes"]
    assert after["macs"] < before["macs"] == details["macs_before"]
    assert all(details["filters_after"][b] < details["filters_before"][b] for b in details["filters_after"])


def test_distilled_student_is_smaller_than_its_teacher(pipeline):
    _, result, _ = pipeline
    distill = stage(result, "distill")
    assert distill["params"] < distill["details"]["teacher_params"]


def test_reports_are_written(pipeline):
    config, result, _ = pipeline
    saved = json.loads((config.out / "report.json").read_text())
    assert saved["labels"] == [str(i) for i in range(10)]
    assert saved["seed"] == 0
    page = (config.out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3


def test_resume_skips_finished_stages(pipeline):
    config, result, _ = pipeline
    first = next((config.out / "stages").glob("01-*")) / "metrics.json"
    kept = json.loads(first.read_text())
    old = {k: v for k, v in kept.items() if k not in ("engine", "engine_why", "engines", "model_bytes")}
    first.write_text(json.dumps(old))  # as an earlier tinydeploy kept it: TFLM costs only
    events = []
    again = optimize(config, lambda kind, info: events.append((kind, info.get("stage"))))
    assert [e for e in events if e[0] == "skip"] == [("skip", s["stage"]) for s in result.report["stages"]]
    assert not [e for e in events if e[0] in ("epoch", "done")]
    assert again.report["chosen"] == result.report["chosen"]


def test_other_settings_in_the_same_folder_are_refused(pipeline):
    config, _, _ = pipeline
    other = OptimizeConfig(config.data, config.out, config.board, budget="fast", seed=1)
    with pytest.raises(BadInput, match="seed differ.*--force"):
        optimize(other)


@pytest.mark.parametrize("change, differ", [({"targets": Targets(max_latency_ms=0.5)}, "targets"),
                                            ({"min_accuracy": 0.9}, "min_accuracy")])
def test_a_rerun_with_other_targets_is_refused_not_judged_by_the_old_ones(pipeline, change, differ):
    config, _, _ = pipeline
    other = OptimizeConfig(config.data, config.out, config.board, budget="fast", seed=0, **change)
    with pytest.raises(BadInput, match=f"{differ} differ"):
        optimize(other)
