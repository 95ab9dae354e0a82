"""Architectures that fit the data's shape (issue 33, item 3): the family for long windows is
strided and dilated with a head sized to the class count, sized to the targets by the cost
model; training effort grows with the data; small sets choose by repeated cross-validation;
dilated models convert to int8 and run the same on TFLM and the C engine."""

import numpy as np
import pytest

from tinydeploy.core.boards import get_board
from tinydeploy.core.data import from_arrays
from tinydeploy.core.targets import Targets
from tinydeploy.optimize import architectures as arch_lib
from tinydeploy.optimize import training


def _series(steps: int, classes: int, per_class: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), per_class)
    x = rng.normal(size=(len(y), steps, 1)).astype(np.float32)
    return from_arrays(x, y, None, None, "probe", seed=0)


@pytest.mark.unit
def test_the_long_window_family_is_strided_dilated_and_has_a_head_for_52_classes():
    arch = arch_lib.family((2000, 1), 52)(1.0)
    arch.validate()
    assert arch.name == "long-series"
    assert arch.blocks[0].stride >= 4 and arch.blocks[0].kernel >= arch.blocks[0].stride
    assert sum(b.stride == 2 for b in arch.blocks[1:]) >= 2
    assert any(b.dilation > 1 for b in arch.blocks)
    assert all(b.stride == 1 for b in arch.blocks if b.dilation > 1)
    assert arch.blocks[-1].filters >= 52
    # a window twice as long is cut down harder first; few classes get a narrower head
    assert arch_lib.family((4000, 1), 52)(1.0).blocks[0].stride == 2 * arch.blocks[0].stride
    assert arch_lib.family((2000, 1), 10)(1.0).blocks[-1].filters < 52
    # short windows keep their family, images theirs, each with the head wide enough
    assert arch_lib.family((150, 3), 4)(1.0) == arch_lib.series_arch(150)
    assert arch_lib.family((28, 28, 1), 60)(1.0).blocks[-1].filters >= 60


@pytest.mark.unit
def test_dilation_round_trips_and_old_specs_still_load():
    arch = arch_lib.family((1500, 1), 10)(0.5)
    assert arch_lib.Arch.from_dict(arch.to_dict()) == arch
    old = {"name": "x", "head_units": 0, "blocks": [{"kind": "conv", "filters": 8, "kernel": 3, "stride": 2,
                                                     "activation": "relu", "pool": False, "residual": False}]}
    assert arch_lib.Arch.from_dict(old).blocks[0].dilation == 1
    assert "dilation" not in arch_lib.Arch.from_dict(old).to_dict()["blocks"][0]  # fingerprints unchanged
    with pytest.raises(Exception, match="dilation 2 with stride 2"):
        arch_lib.Arch((arch_lib.Block("separable", 8, 3, 2, dilation=2),)).validate()


@pytest.mark.unit
def test_training_effort_grows_with_the_sample_count():
    steps = [training.schedule(n, 40, 32, training.MIN_SCRATCH_STEPS if n < training.AUGMENT_BELOW else 0)[2]
             for n in (40, 400, 1000, 5000)]
    assert steps == sorted(steps) and steps[0] >= training.MIN_SCRATCH_STEPS and steps[-1] > 3 * steps[2]
    batch, epochs, total = training.schedule(5000, 40, 32)
    assert (batch, epochs, total) == (32, 40, 157 * 40)


@pytest.mark.unit
def test_image_sets_are_augmented_up_to_a_few_thousand_series_sets_only_when_small():
    assert training.augments(1257, (28, 28, 1)) and training.augments(4999, (16, 16, 1))
    assert not training.augments(5000, (28, 28, 1))
    assert training.augments(499, (128, 3)) and not training.augments(1257, (128, 3))


@pytest.mark.unit
def test_small_sets_get_repeated_stratified_cross_validation():
    y = np.repeat(np.arange(4), 10)  # 40 windows
    splits = training.cv_splits(y, "default", seed=0)
    assert len(splits) == training.CV_FOLDS * training.CV_REPEATS["default"] == 6
    for repeat in range(2):
        held = np.concatenate([h for _, h in splits[3 * repeat:3 * repeat + 3]])
        assert sorted(held) == list(range(40))  # every window held out once a repeat
    for train, held in splits:
        assert not set(train) & set(held) and len(train) + len(held) == 40
        assert set(y[held]) == set(range(4))  # stratified: every class in every fold
    assert not np.array_equal(splits[0][1], splits[3][1])  # dealt anew each repeat
    assert len(training.cv_splits(y, "fast", 0)) == 3
    assert len(training.cv_splits(np.repeat(np.arange(4), 100), "default", 0)) == 3  # enough predictions: once
    assert len(training.cv_splits(np.repeat(np.arange(2), 2), "default", 0)) == 4  # 2 folds: the rarest class
    assert training.cv_splits(np.array([0, 0, 1]), "default", 0) == []


@pytest.mark.host
def test_the_sized_family_for_2000_steps_and_52_classes_fits_the_s3_targets(tmp_path):
    from tinydeploy.optimize import engine_choice, stages
    from tinydeploy.optimize.training import OptimizeConfig, Trainer
    data = _series(2000, 52)
    work = Trainer(OptimizeConfig(data=data, out=tmp_path, board=get_board("esp32-s3-devkitc-1")))
    arch, sizing = stages.sized(work)
    assert any(b.dilation > 1 for b in arch.blocks) and any(b.stride > 1 for b in arch.blocks[1:])
    assert arch.blocks[-1].filters >= 52 and arch_lib.plain_model(arch, data.input_shape, 52).output.shape[-1] == 52
    # the sized width met every target less the margin on an engine of the board (costed untrained) ...
    chosen = [t for t in sizing["tried"] if t["width"] == sizing["width"]]
    assert chosen and all(t["fits"] for t in chosen) and chosen[0]["latency_ms"] <= 0.9
    assert chosen[0]["flash_bytes"] <= 0.9 * 20 * 1024
    # ... and so does the half width that cross-validation may choose instead
    half = arch_lib.family(data.input_shape, 52)(sizing["width"] / 2)
    options = engine_choice.cost_all(arch_lib.untrained_model(half, data), work.config.board, Targets())
    assert engine_choice.choose(options)[0].met, [o.verdicts for o in options]


@pytest.mark.host
def test_a_dilated_long_window_model_runs_the_same_on_tflm_and_the_c_engine(tmp_path):
    from tinydeploy.codegen import cengine
    from tinydeploy.runtime.evaluate import evaluate, reference_outputs
    data = _series(1200, 12, per_class=2)
    model = arch_lib.untrained_model(arch_lib.family(data.input_shape, 12)(0.5), data)
    dilated = [op for op in model.operators if op.options.get("dilation_h", 1) > 1]
    assert dilated and {op.name for op in dilated} <= {"DEPTHWISE_CONV_2D", "CONV_2D"}
    assert evaluate(model, data.x_val, data.y_val).accuracy >= 0  # loads and runs on the TFLM interpreter
    x = np.random.default_rng(3).integers(-128, 128, size=(8, *model.input_tensors[0].shape[1:]), dtype=np.int8)
    host = cengine.HostModel(cengine.lower(model), tmp_path)
    assert np.array_equal(host.predict(x).reshape(8, -1), reference_outputs(model, x).reshape(8, -1))


@pytest.mark.unit
def test_the_search_space_of_a_long_window_holds_strided_stems_dilated_blocks_and_a_wide_head():
    import optuna

    from tinydeploy.optimize.search import sample_arch
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = _series(2000, 52, per_class=2)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    archs = [sample_arch(study.ask(), data) for _ in range(60)]
    for arch in archs:
        arch.validate()
        assert arch.blocks[-1].kind == "depthwise" or arch.blocks[-1].filters >= 52
    assert {a.blocks[0].stride for a in archs} == {2, 4, 8}
    assert any(b.dilation > 1 for a in archs for b in a.blocks)
    assert any(b.stride == 2 for a in archs for b in a.blocks[2:])
    # without the data (or for short windows) the space is the one it was
    other = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))  # a study holds one data's space
    short = [sample_arch(other.ask()) for _ in range(20)]
    assert all(b.dilation == 1 for a in short for b in a.blocks) and all(a.blocks[0].stride <= 2 for a in short)


@pytest.mark.host
def test_a_small_long_window_set_chooses_its_width_by_repeated_cross_validation(tmp_path):
    from tinydeploy.optimize import OptimizeConfig, optimize
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 12)
    t = np.arange(600)
    x = (np.sin(2 * np.pi * (0.05 + 0.1 * y[:, None]) * t + rng.uniform(0, 6, (36, 1)))
         + rng.normal(0, 0.3, (36, 600)))[..., None].astype(np.float32)
    data = from_arrays(x, y, None, None, "tones", seed=0)
    report = optimize(OptimizeConfig(data=data, out=tmp_path, board=get_board("esp32-s3-devkitc-1"), budget="fast",
                                     stages=("arch", "final"))).report
    arch = report["stages"][0]
    chosen_by = arch["details"]["chosen_by"]
    assert chosen_by["splits"] == len(training.cv_splits(np.concatenate([data.y_train, data.y_val]), "fast", 0)) == 3
    assert len(chosen_by["candidates"]) == 2 and all(len(c["folds"]) == 3 for c in chosen_by["candidates"])
    assert all(c["predictions"] == 36 for c in chosen_by["candidates"])
    assert arch["details"]["sizing"]["family"] == "long-series" and arch["meets_targets"]
