import json

import numpy as np
import pytest

from tinydeploy.optimize import architectures as arch_lib
from tinydeploy.core import data
from tinydeploy.core.boards import get_board
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import load_model
from tinydeploy.optimize import OptimizeConfig, check_stages, optimize
from tests.helpers import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def digits16():
    return data.load("digits", image_size=16, seed=0)


def stage(result, name):
    return next(s for s in result.report["stages"] if s["stage"] == name)


def test_same_seed_same_figures(tmp_path, digits16):
    runs = []
    for name in ("a", "b"):
        config = OptimizeConfig(digits16, tmp_path / name, get_board("esp32dev"), budget="fast", seed=3,
                                stages=check_stages(["arch"]))
        runs.append(optimize(config).report)
    assert runs[0]["stages"][0]["accuracy"] == runs[1]["stages"][0]["accuracy"]
    assert runs[0]["chosen"]["sha256"] == runs[1]["chosen"]["sha256"]


def test_stage_list_is_validated():
    assert check_stages(["arch", "prune"]) == ("arch", "prune", "final")
    with pytest.raises(BadInput, match="unknown stages: quantize. Stages: arch, qat"):
        check_stages(["arch", "quantize"])
    with pytest.raises(BadInput, match="must start with 'arch'"):
        check_stages(["qat", "arch"])
    assert check_stages(["nearest"]) == ("nearest", "final")
    with pytest.raises(BadInput, match="'nearest' must come after the other stages"):
        check_stages(["arch", "nearest", "qat"])


def test_time_series_with_string_labels(tmp_path):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 32)[None, :, None]
    # 300 windows a class: 540 to train on, 108 of them validation, so no cross-validation of
    # widths (training.SMALL_VALIDATION)
    phase = rng.uniform(0, 2 * np.pi, size=(300, 1, 3))
    slow = np.sin(2 * np.pi * 2 * t + phase) + 0.1 * rng.normal(size=(300, 32, 3))
    fast = np.sin(2 * np.pi * 7 * t + phase) + 0.1 * rng.normal(size=(300, 32, 3))
    x = np.concatenate([slow, fast]).astype(np.float32) * 500 + 1000  # raw sensor counts
    y = np.array(["slow"] * 300 + ["fast"] * 300)
    test = rng.permutation(600)[:60]
    train = np.setdiff1d(np.arange(600), test)
    np.savez(tmp_path / "gestures.npz", x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test])
    ds = data.load(str(tmp_path / "gestures.npz"))
    config = OptimizeConfig(ds, tmp_path / "out", get_board("esp32-c3-devkitm-1"), budget="fast",
                            stages=check_stages(["arch"]))
    result = optimize(config)
    assert result.report["labels"] == ["fast", "slow"]
    model = load_model(tmp_path / "out" / "model.tflite")
    assert model.input_tensors[0].shape == (1, 32, 3) and model.is_int8
    assert result.report["chosen"]["accuracy_tflm"] >= 0.9
    # The held-out windows, evaluated once for the chosen model, apart from validation.
    test = result.report["test"]
    assert test["samples"] == 60 and test["accuracy"] >= 0.9
    assert test["interval95"][0] < test["accuracy"] <= test["interval95"][1]
    assert result.report["data"]["test"] == 60


def test_a_chosen_nearest_prototype_classifier_is_deployed_made_from_every_labelled_window(tmp_path):
    x, y = _bumps(60, steps=48)
    test_x, test_y = _bumps(40, steps=48, seed=1)
    np.savez(tmp_path / "bumps.npz", x_train=x, y_train=y, x_test=test_x, y_test=test_y)
    config = OptimizeConfig(data.load(str(tmp_path / "bumps.npz")), tmp_path / "out", get_board("esp32dev"),
                            budget="fast", stages=check_stages(["nearest"]))
    result = optimize(config)
    chosen, (nearest,) = result.report["chosen"], result.report["stages"]
    assert chosen["stage"] == "nearest" and nearest["arch"]["prototypes"] == nearest["details"]["prototypes_per_class"]
    assert nearest["details"]["prototypes"] == f"every one of {len(config.data.x_train)} windows"
    assert chosen["deployed"].startswith("the chosen nearest-prototype classifier made again, and trained the "
                                         "same way, from every one of 60 windows (training and validation)")
    # Validation is small (12 windows): the stage also has a leave-one-out figure over all 60.
    assert nearest["loo_samples"] == 60 and nearest["details"]["leave_one_out"]["samples"] == 60
    assert 0.9 <= nearest["loo_accuracy"] <= 1.0 and "leave-one-out 1-NN accuracy over all 60" in chosen["chosen_on"]
    stage_model = next((tmp_path / "out" / "stages").glob("*-nearest")) / "model.tflite"
    assert (tmp_path / "out" / "model.tflite").read_bytes() != stage_model.read_bytes()
    assert result.report["test"]["samples"] == 40 and result.report["test"]["accuracy"] >= 0.9


def _bumps(n: int, steps: int = 120, seed: int = 0):
    """1-channel windows: a bump or a step at a random place, in noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[None, :]
    at = rng.uniform(20, steps - 20, (n, 1))
    y = np.arange(n) % 2
    x = np.where(y[:, None] == 0, np.exp(-0.5 * ((t - at) / 6) ** 2), (t > at).astype(float))
    return (x + rng.normal(0, 0.1, x.shape))[..., None].astype(np.float32), y


def test_target_seeking_shrinks_a_series_model_until_it_meets_1ms_on_the_c3(tmp_path):
    """The first series model misses 1 ms on the ESP32-C3; target seeking finds a narrower one
    by bisection on its width and trains it, and that one is chosen. The windows are long
    enough (200 steps) that even the faster engine misses by about twice at full width, so
    the bisection tries widths on both sides of the target."""
    x, y = _bumps(80, steps=200)
    # The architecture is given: without one, the arch stage sizes the data's family to the targets
    # itself (tests/test_architectures_scaling.py), and there is nothing left to seek.
    config = OptimizeConfig(data.from_arrays(x, y, None, None, "bumps"), tmp_path / "out",
                            get_board("esp32-c3-devkitm-1"), budget="fast", stages=check_stages(["arch", "seek"]),
                            arch=arch_lib.series_arch(200))
    result = optimize(config)
    arch, seek = stage(result, "arch"), stage(result, "seek")
    assert arch["latency_ms"] > 1.0 and not arch["meets_targets"]
    assert seek["latency_ms"] <= 1.0 and seek["meets_targets"] and result.met
    assert result.report["chosen"]["stage"] == "seek"
    tried = seek["details"]["tried"]
    assert len(tried) >= 4 and any(p["misses"] for p in tried) and any(not p["misses"] for p in tried)
    assert 0 < seek["details"]["width"] < 1
    for retried in seek["details"]["retrained_narrower"]:  # trained, a width that missed; then narrower
        assert retried["width"] > seek["details"]["width"] and retried["misses"]
    chosen = result.report["chosen"]
    assert chosen["engine"] in ("tflm", "c") and chosen["engine_why"]
    c_engine = next(e for e in seek["engines"] if e["engine"] == "c")
    assert c_engine["latency_basis"].startswith("estimate from emulated RV32IMC instructions at 160 MHz")


def test_cli_targets_nothing_can_meet_exit_1_naming_the_smallest_model(tmp_path):
    x, y = _bumps(500, steps=60)  # 100 validation windows: no cross-validation (training.SMALL_VALIDATION)
    np.savez(tmp_path / "bumps.npz", x_train=x, y_train=y)
    code, out, err = run_cli("optimize", "--data", tmp_path / "bumps.npz", "--out", tmp_path / "out",
                             "--budget", "fast", "--stages", "arch,seek", "--max-latency-ms", "0.00001", "--quiet")
    assert code == 1
    assert "even the smallest model of the family" in err and "width 0.125) misses: latency" in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    smallest = report["seek"]["smallest"]
    assert smallest["latency_ms"] > 0.00001 and smallest["stride"] >= 2 and smallest["blocks"] == 1
    assert (tmp_path / "out" / "model.tflite").exists()  # the best model found is still written


def test_normalization_folding_is_exact(digits16):
    keras_model = arch_lib.build(arch_lib.default_arch(), digits16.input_shape, 10,
                                 arch_lib.Normalization.of(digits16.x_train))
    keras_model.compile("adam", "mse")
    keras_model.fit(digits16.x_train[:64], np.zeros((64, 10)), epochs=1, verbose=0)  # move the BN statistics
    plain = arch_lib.fuse(keras_model, arch_lib.default_arch(), digits16.input_shape, 10,
                          arch_lib.Normalization.of(digits16.x_train))
    x = digits16.x_val[:32]
    np.testing.assert_allclose(plain(x).numpy(), keras_model(x, training=False).numpy(), atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 2, 1), (3, 1, 4), (1, 3), (4, 2)])
def test_inputs_smaller_than_the_first_kernel_still_build_and_fold(shape):
    # a 2x2 image, a 3x1 image, a 1-step and a 4-step window: the first VALID layer's kernel
    # shrinks to the input, and the normalization still folds into it exactly
    x = np.random.default_rng(0).normal(size=(8, *shape)).astype(np.float32)
    norm = arch_lib.Normalization.of(x)
    keras_model = arch_lib.build(arch_lib.default_arch(shape), shape, 3, norm)
    plain = arch_lib.fuse(keras_model, arch_lib.default_arch(shape), shape, 3, norm)
    assert plain(x).shape == (8, 3)
    np.testing.assert_allclose(plain(x).numpy(), keras_model(x, training=False).numpy(), atol=1e-4)


def test_qat_rejection_names_the_layer_and_the_fix():
    from tinydeploy.runtime import _tf
    from tinydeploy.optimize.quantization import qat_ready
    keras = _tf.keras()
    model = keras.Sequential([keras.layers.Input((16, 16, 1)), keras.layers.Conv2D(8, 3),
                              keras.layers.LayerNormalization(name="ln"), keras.layers.ReLU(),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    with pytest.raises(BadInput, match="layer 'ln' \\(LayerNormalization\\) cannot be quantization-aware "
                                       "trained: .*replace it with a supported layer"):
        qat_ready(model)




def test_cli_missed_target_exits_1_and_still_writes_the_model(tmp_path):
    code, out, err = run_cli("optimize", "--data", "digits", "--image-size", "16", "--out", tmp_path,
                             "--budget", "fast", "--stages", "arch", "--max-model-kb", "1", "--quiet")
    assert code == 1
    assert "no model meets every target" in err and "model" in err and "needs <= 1 KB" in err
    assert (tmp_path / "model.tflite").stat().st_size > 1024
    code, out, err = run_cli("evaluate", tmp_path / "model.tflite", "--data", "digits", "--image-size", "16",
                             "--json")
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert json.loads(out)["accuracy"] >= report["chosen"]["accuracy_tflm"] - 0.05


def test_cli_unreachable_accuracy_exits_1_showing_what_each_cost_reached(tmp_path):
    x, _ = _bumps(500, steps=60)  # 100 validation windows: no cross-validation (training.SMALL_VALIDATION)
    y = np.random.default_rng(1).integers(0, 2, 500)  # labels with nothing to learn
    np.savez(tmp_path / "noise.npz", x_train=x, y_train=y)
    code, out, err = run_cli("optimize", "--data", tmp_path / "noise.npz", "--out", tmp_path / "out", "--budget",
                             "fast", "--stages", "arch", "--min-accuracy", "0.99", "--quiet")
    assert code == 1 and "accuracy" in err and "(needs >= 0.99)" in err
    assert "Accuracy reached at each cost: arch 0." in err and " B, " in err


def test_cli_bad_data_exits_2_before_training(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.full((10, 8, 8, 1), np.nan), y_train=np.arange(10) % 2)
    code, out, err = run_cli("optimize", "--data", tmp_path / "bad.npz", "--out", tmp_path / "out")
    assert code == 2
    assert "NaN or Inf" in err
    assert not (tmp_path / "out").exists()


def test_cli_test_data_that_does_not_match_exits_2_before_training(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 8, 8, 1)).astype(np.float32)
    np.savez(tmp_path / "train.npz", x_train=x, y_train=np.arange(40) % 2)
    np.savez(tmp_path / "test.npz", x_test=x[:10, :4], y_test=np.array([0, 1, 7] * 3 + [0]))
    code, out, err = run_cli("optimize", "--data", tmp_path / "train.npz", "--test", tmp_path / "test.npz",
                             "--out", tmp_path / "out")
    assert code == 2
    assert "test samples are (4, 8, 1), training samples (8, 8, 1)" in err
    assert not (tmp_path / "out").exists()
    np.savez(tmp_path / "test.npz", x_test=x[:10], y_test=np.array([0, 1, 7] * 3 + [0]))
    code, out, err = run_cli("optimize", "--data", tmp_path / "train.npz", "--test", tmp_path / "test.npz",
                             "--out", tmp_path / "out")
    assert code == 2 and "test labels not in the training data: 7" in err


def test_the_bit_width_variable_drives_the_fake_quantizer():
    """Changing the variable (not the model) changes what the QAT graph computes."""
    from tinydeploy.optimize import quantization as quant
    plain = arch_lib.plain_model(arch_lib.default_arch(), (16, 16, 1), 10)
    keys = {layer.name: f"probe_{layer.name}" for layer in plain.layers
            if type(layer).__name__ in quant.MAC_LAYERS}
    for key in keys.values():
        quant.bits_variable(key, 8)
    qat = quant.quantize_for_training(arch_lib.with_softmax(plain), keys)
    wrapper = next(layer for layer in qat.layers if getattr(layer, "layer", None) is not None
                   and layer.layer.name == "b1_pw")
    kernel_var, quantizer, quantizer_vars = wrapper._weight_vars[0]

    def levels_per_channel():
        values = quantizer(kernel_var, training=True, weights=quantizer_vars).numpy()
        return max(len(np.unique(values[..., c])) for c in range(values.shape[-1]))

    assert levels_per_channel() > 3  # 8-bit: many levels
    for key in keys.values():
        quant.bits_variable(key, 2)
    assert levels_per_channel() <= 3  # 2-bit symmetric: -1, 0, +1 steps
    kernel = plain.get_layer("b1_pw").get_weights()[0]
    levels = quant.fake_quantize_numpy(kernel, 4, -1)
    assert all(len(np.unique(levels[..., c])) <= 15 for c in range(levels.shape[-1]))


def _metrics(**figures):
    """A stage's metrics record with these figures, the others plain placeholders."""
    from tinydeploy.optimize.metrics import StageMetrics
    plain = {"accuracy": 0.5, "engine": "tflm", "engine_why": "", "engines": [], "flash_bytes": 10_000,
             "arena_bytes": 4_000, "latency_ms": 0.5, "latency_basis": "estimate", "model_bytes": 10_000,
             "host_arena_bytes": 4_000, "macs": 1_000, "params": 500, "targets": [], "meets_targets": True}
    return StageMetrics(**{**plain, **figures})


@pytest.mark.unit
def test_stages_are_ranked_on_validation_first_and_pooled_accuracy_breaks_ties():
    from tinydeploy.optimize.training import Candidate
    from tinydeploy.optimize.pipeline import _rank

    def stage(name, val, pooled, bits=None, flash=10_000):
        metrics = _metrics(meets_targets=True, targets=[], accuracy=val, pooled_accuracy=pooled, flash_bytes=flash)
        return Candidate(name, None, None, bits or {}, b"", metrics)

    fitted_cnn, nearest = stage("distill", 0.875, 0.972), stage("nearest", 1.0, 0.944)
    assert max([fitted_cnn, nearest], key=_rank) is nearest  # in-sample training fit does not outvote validation
    underfit = stage("prune", 0.875, 0.72)
    assert max([underfit, fitted_cnn], key=_rank) is fitted_cnn  # equal on validation: pooled decides
    four_bit = stage("mixed", 0.875, 0.972, bits={"b1_pw": 4}, flash=9_000)
    assert max([four_bit, fitted_cnn], key=_rank) is fitted_cnn  # then 8-bit weights before smaller flash
    # A nearest stage with a leave-one-out figure over every labelled window is ranked on it,
    # by the low ends of the 95% intervals: 33/40 (0.68) beats 6/10 (0.31), 33/36 (0.78) beats
    # 8/8 (0.68), and 8/8 beats 22/40 (0.40).
    lucky_cnn, loo_nearest = stage("distill", 0.6, 0.9), stage("nearest", 0.4, 0.675)
    for s in (lucky_cnn, loo_nearest):
        s.metrics.val_samples = 10
    loo_nearest.metrics.loo_accuracy, loo_nearest.metrics.loo_samples = 0.825, 40
    assert max([lucky_cnn, loo_nearest], key=_rank) is loo_nearest
    perfect_cnn = stage("seek", 1.0, 1.0)
    perfect_cnn.metrics.val_samples = 8
    loo_nearest.metrics.loo_accuracy, loo_nearest.metrics.loo_samples = round(33 / 36, 5), 36
    assert max([perfect_cnn, loo_nearest], key=_rank) is loo_nearest
    loo_nearest.metrics.loo_accuracy, loo_nearest.metrics.loo_samples = 0.55, 40
    assert max([perfect_cnn, loo_nearest], key=_rank) is perfect_cnn


@pytest.mark.unit
def test_leave_one_out_labels_each_window_by_its_nearest_other_one():
    from tinydeploy.optimize.nearest import leave_one_out
    x = np.array([[0.0], [0.1], [1.0], [1.1], [0.52]], np.float32)[:, :, None]  # (5 windows, 1 step, 1 channel)
    assert leave_one_out(x, np.array([0, 0, 1, 1, 0])) == 1.0
    # The last window's nearest other one (0.1, not itself) decides it: labelled 1, it is wrong.
    assert leave_one_out(x, np.array([0, 0, 1, 1, 1])) == 0.8


@pytest.mark.unit
def test_a_stage_no_engine_runs_ranks_below_one_that_misses_a_target_and_the_report_still_renders():
    from tinydeploy.core.report import optimize_html
    from tinydeploy.core.targets import TargetResult
    from tinydeploy.optimize.pipeline import _rank
    from tinydeploy.optimize.training import Candidate
    missed = TargetResult("latency", 2.0, 1.0, "ms", "estimate")
    slow = Candidate("arch", None, None, {}, b"", _metrics(
        stage="arch", meets_targets=False, targets=[missed], accuracy=0.8, flash_bytes=9_000,
        arena_bytes=4_000, latency_ms=2.0, macs=1_000, seconds=1.0, engine="tflm"))
    # a converter that left float layers: the accuracy is measured, no engine of the board runs it
    floating = Candidate("nearest", None, None, {}, b"", _metrics(
        stage="nearest", meets_targets=False, targets=[], accuracy=0.9, flash_bytes=None,
        arena_bytes=None, latency_ms=None, macs=200, seconds=1.0, engine="tflm"))
    assert max([floating, slow], key=_rank) is slow
    stages = [slow.metrics, floating.metrics]
    report = {"stages": [s.to_dict() for s in stages], "met": False, "missed": ["no engine runs the model"],
              "targets": {"max_model_kb": 20, "max_arena_kb": 64, "max_latency_ms": 1.0},
              "data": {"name": "x", "train": 10, "val": 4}, "board": "esp32-s3-devkitc-1", "budget": "fast",
              "seed": 0, "chosen": {**floating.metrics.to_dict(), "accuracy_tflm": 0.9,
                                    "reference_check": {"top1_agreement": 1.0, "max_output_diff_lsb": 0}}}
    page = optimize_html(report, stages)
    assert "<td>nearest</td><td>90.00%</td><td>tflm</td><td>—</td><td>—</td><td>200</td><td>—</td>" in page


@pytest.mark.unit
def test_the_stage_registry_has_a_class_for_every_stage_but_final_in_order():
    from tinydeploy.optimize import STAGES
    from tinydeploy.optimize.stages import STAGE_CLASSES
    assert (*STAGE_CLASSES, "final") == STAGES
    assert all(stage.name == name and callable(stage.run) for name, stage in STAGE_CLASSES.items())


# The keys of a stage in report.json (and its metrics.json, with "chain"): reports and docs read them.
REPORT_KEYS = ["accuracy", "val_samples", "pooled_accuracy", "pooled_samples", "engine", "engine_why", "engines",
               "flash_bytes", "arena_bytes", "latency_ms", "latency_basis", "model_bytes", "host_arena_bytes",
               "macs", "params", "targets", "meets_targets", "loo_accuracy", "loo_samples", "stage", "chain",
               "arch", "bits", "seconds", "details", "history", "history_fixed4"]


@pytest.mark.unit
def test_stage_metrics_round_trip_through_the_report_keys():
    from tinydeploy.core.targets import TargetResult
    from tinydeploy.optimize.engine_choice import EngineCost
    from tinydeploy.optimize.metrics import StageMetrics
    latency = TargetResult("latency", 1.5, 1.0, "ms", "estimate")
    engines = [EngineCost("tflm", 4_096, 9_000, 1.5, "estimate", [latency]),
               EngineCost("c", unavailable="no kernel for op X")]
    full = _metrics(engines=engines, targets=[latency], meets_targets=False, val_samples=12, pooled_accuracy=0.9,
                    pooled_samples=60, loo_accuracy=0.85, loo_samples=60, stage="progressive",
                    chain=["arch", "progressive"], arch={"name": "a", "head_units": 0, "blocks": []},
                    bits={"b1_pw": 4}, seconds=3.5, details={"final_bits": 4},
                    history=[{"epoch": 1, "val_accuracy": 0.5}], extra_histories={"fixed4": [{"epoch": 1}]})
    raw = full.to_dict()
    assert list(raw) == REPORT_KEYS
    assert raw["engines"][1] == {"engine": "c", "arena_bytes": None, "flash_bytes": None, "latency_ms": None,
                                 "latency_basis": "", "met": False, "targets": [], "unavailable": "no kernel for op X",
                                 "energy": None}
    assert raw["targets"] == [latency.to_dict()] and raw["history_fixed4"] == [{"epoch": 1}]
    assert StageMetrics.from_dict(json.loads(json.dumps(raw))) == full
    # The figures a stage doesn't have are left out, as they always were; a report's stages have no chain.
    lean = _metrics(stage="arch")
    assert set(lean.to_dict()) == set(REPORT_KEYS) - {"val_samples", "pooled_accuracy", "pooled_samples",
                                                      "loo_accuracy", "loo_samples", "history_fixed4"}
    reported = {k: v for k, v in lean.to_dict().items() if k != "chain"}
    assert StageMetrics.from_dict(reported) == lean


@pytest.mark.unit
def test_shrink_to_fit_bisects_the_width_then_doubles_the_stride_then_drops_blocks():
    from tinydeploy.optimize import fit
    arch = arch_lib.Arch((arch_lib.Block("conv", 32, 3, 1), arch_lib.Block("separable", 64, 3, 1),
                          arch_lib.Block("separable", 64, 3, 1)), 0, name="a")
    series = data.from_arrays(np.zeros((8, 64, 1), np.float32), np.arange(8) % 2, None, None, "zeros")
    tried = []

    def cost(candidate):  # what the fits predicates below judge
        return candidate.blocks[-1].filters, candidate.blocks[0].stride, len(candidate.blocks)

    def fits_under(limit, stride=1, blocks=3):
        def fits(c):
            tried.append(c)
            return c[0] <= limit and c[1] >= stride and c[2] <= blocks
        return fits

    fitted = fit.shrink_to_fit(arch, series, cost, fits_under(20), drop_blocks=True)
    assert fitted.family.blocks == arch.blocks and 20 * 0.93 < fitted.arch.blocks[-1].filters <= 20
    assert len(tried) == 1 + fit.STEPS  # the narrowest, then the bisection (its own width is known to miss)
    tried.clear()
    fitted = fit.shrink_to_fit(arch, series, cost, fits_under(64, stride=4), drop_blocks=True)
    assert fitted.width == 1.0 and fitted.arch.blocks[0].stride == 4 and len(fitted.arch.blocks) == 3
    assert [c[1] for c in tried] == [1, 2, 4, 4]  # each stride's narrowest, then stride 4 whole
    fitted = fit.shrink_to_fit(arch, series, cost, fits_under(64, stride=2, blocks=2), drop_blocks=True)
    assert fitted.width == 1.0 and fitted.arch.blocks[0].stride == 2 and len(fitted.arch.blocks) == 2
    assert fit.shrink_to_fit(arch, series, cost, fits_under(64, stride=2, blocks=2), drop_blocks=False) is None
    assert [f.blocks[0].stride for f in fit.families(arch, series, drop_blocks=False)] == [1, 2, 4, 8]  # MAX_STRIDE
    short = data.from_arrays(np.zeros((8, 16, 1), np.float32), np.arange(8) % 2, None, None, "short")
    assert [(f.blocks[0].stride, len(f.blocks)) for f in fit.families(arch, short, drop_blocks=True)] == [
        (1, 3), (2, 3), (4, 3), (1, 2), (2, 2), (4, 2), (1, 1), (2, 1), (4, 1)]  # 16 // 8 would leave 2 steps


def test_optimize_for_arduino_converts_dense_layers_per_tensor_so_render_takes_the_model(tmp_path):
    """The Arduino library's FULLY_CONNECTED applies one multiplier to every channel
    (frameworks.Arduino.model_problems): optimize --framework arduino converts dense layers per
    tensor, so the model it deploys renders for Arduino (the default, ESP-IDF, keeps them per
    channel, which render refuses for Arduino)."""
    from tinydeploy.codegen.frameworks import FRAMEWORKS
    code, _, err = run_cli("optimize", "--data", "digits", "--image-size", "16", "--out", str(tmp_path / "arduino"),
                           "--board", "esp32dev", "--framework", "arduino", "--budget", "fast", "--stages", "arch",
                           "--min-accuracy", "0.5", "--quiet")
    assert code == 0, err
    model = load_model(tmp_path / "arduino" / "model.tflite")
    assert FRAMEWORKS["arduino"].model_problems(model) == []
    dense = [op for op in model.operators if op.name == "FULLY_CONNECTED"]
    assert dense and all(len(model.tensors[op.inputs[1]].quantization.scales) == 1 for op in dense)
    code, _, err = run_cli("render", str(tmp_path / "arduino" / "model.tflite"), "--board", "esp32dev",
                           "--framework", "arduino", "--out", str(tmp_path / "fw"))
    assert code == 0, err
    code, _, err = run_cli("optimize", "--data", "digits", "--out", str(tmp_path / "bad"), "--board", "qemu-riscv32",
                           "--framework", "arduino", "--quiet")
    assert code == 2 and "--framework arduino doesn't build for qemu-riscv32" in err
