"""optimize's front end: the choice per dataset (frontend_choice), --front-end specs, the model's
metadata, evaluation on raw windows through the front end, and deploy's accuracy checks."""

import json

import numpy as np
import pytest

from tinydeploy.core.boards import get_board
from tinydeploy.core.data import from_arrays
from tinydeploy.core.errors import BadInput
from tinydeploy.core.frontend import Decimate, Frontend, Normalize, Spectrum, Stats, model_frontend
from tinydeploy.core.targets import Targets
from tinydeploy.optimize import frontend_choice as fc
from tests.helpers import run_cli

S3 = "esp32-s3-devkitc-1"


def long_windows(n: int, steps: int, classes: int, seed: int = 0, channels: int = 1):
    """Class-dependent spectra: each class three tones (frequencies jittered by 3%, random
    phases and levels) in unit noise, at a random gain per window. The phases make the raw
    windows of a class far apart (1-NN on them is poor); their spectra are alike."""
    rng = np.random.default_rng(seed)
    tones = np.random.default_rng(1234).uniform(0.01, 0.2, size=(classes, 3))
    y = np.arange(n) % classes
    t = np.arange(steps)
    x = np.empty((n, steps, channels), np.float32)
    for i in range(n):
        for c in range(channels):
            f = tones[y[i]] * rng.uniform(0.97, 1.03, 3)
            signal = sum(rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * fk * t + rng.uniform(0, 2 * np.pi)) for fk in f)
            x[i, :, c] = rng.uniform(0.5, 2.0) * (signal + rng.normal(0, 1.0, steps))
    return x, y


# ---- specs ----

@pytest.mark.unit
@pytest.mark.parametrize("spec, blocks", [
    ("normalize:log,decimate:4", (Normalize(log_scale=True), Decimate(4))),
    ("normalize,spectrum:frame=256,hop=128,bands=20", (Normalize(), Spectrum(256, 128, 20))),
    ("decimate:8,normalize:log,stats:mean+std+rms,segments=4", (Decimate(8), Normalize(True),
                                                                Stats(("mean", "std", "rms"), 4))),
    ("spectrum:frame=512,hop=256,bands=40,spacing=mel,rate=16000,mfcc=13",
     (Spectrum(512, 256, 40, "mel", 16000, cepstra=13),)),
])
def test_specs_read_as_written_and_round_trip(spec, blocks):
    front = fc.parse_spec(spec)
    assert front.blocks == blocks
    assert fc.parse_spec(fc.to_spec(front)) == front
    assert fc.parse_spec("none") is None


@pytest.mark.unit
@pytest.mark.parametrize("spec, named", [
    ("spectrum:frame=100", "frame_length must be a power of two"),
    ("wavelet:3", "'wavelet:3' is not a block"),
    ("decimate:1", "factor must be an integer from 2"),
    ("normalize,hop=3", "normalize has no parameter 'hop'"),
    ("stats:mean+median", "unknown: 'median'"),
    ("spectrum,normalize", "spectrum must be the last block"),
])
def test_bad_specs_name_the_bad_part_and_list_what_is_accepted(spec, named):
    with pytest.raises(BadInput) as caught:
        fc.parse_spec(spec)
    message = str(caught.value)
    assert named in message and spec in message
    assert "blocks and parameters accepted" in message and "spectrum (frame_length or frame" in message


@pytest.mark.unit
def test_a_json_file_pins_a_front_end(tmp_path):
    front = Frontend((Decimate(4), Normalize(True)), input_scale=0.5)
    path = tmp_path / "front.json"
    path.write_text(json.dumps(front.to_dict()))
    assert fc.parse_spec(str(path)) == front
    path.write_text(json.dumps([{"kind": "decimate", "factor": 4}, {"kind": "nomalize"}]))
    with pytest.raises(BadInput, match="unknown front-end block 'nomalize'; accepted: normalize"):
        fc.parse_spec(str(path))


@pytest.mark.unit
def test_bad_front_end_on_the_command_line_exits_2_naming_the_part(tmp_path, capsys):
    from tinydeploy.cli import main
    for command in (["optimize", "--out", str(tmp_path / "o")], ["deploy", "--out", str(tmp_path / "d")]):
        code = main([*command, "--data", "digits", "--front-end", "normalize,spectrum:frame=100,hop=50"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert "frame_length must be a power of two" in err and "blocks and parameters accepted" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()


@pytest.mark.unit
def test_a_pinned_front_end_must_fit_the_window_and_leave_the_network_a_budget():
    x, y = long_windows(24, 200, 2)
    data = from_arrays(x, y, None, None, "w")
    with pytest.raises(BadInput, match="frames of 256 steps need at least that many; the window has 200"):
        fc.choose(data, "spectrum:frame=256,hop=128,bands=8", Targets(), get_board(S3))
    with pytest.raises(BadInput, match="leaving the network nothing of --max-latency-ms 0.01"):
        fc.choose(data, "normalize,spectrum:frame=64,hop=32", Targets(max_latency_ms=0.01), get_board(S3))
    choice = fc.choose(data, "decimate:4,normalize:log", Targets(max_latency_ms=2), get_board(S3))
    left = choice.network_targets(Targets(max_latency_ms=2), get_board(S3))
    assert choice.how == "pinned" and 0 < left.max_latency_ms < 2 and left.max_arena_kb < Targets().max_arena_kb
    assert fc.choose(data, "none", Targets(), get_board(S3)).front is None


# ---- the choice ----

@pytest.mark.unit
def test_candidates_scale_with_the_window():
    names = lambda shape, kind="series": [n for n, _ in fc.candidates(shape, kind)]  # noqa: E731
    assert names((28, 28, 1), "image") == ["none"]
    assert names((28, 1)) == ["none", "normalize"]
    long = names((1500, 1))
    assert any(n.startswith("decimate 12 + normalize") for n in long)
    assert sum("spectrum" in n and not n.startswith("pooled") for n in long) == 3
    assert [n for n in long if n.startswith("pooled")] == [
        "pooled relative spectrum 32, 16 bands", "pooled relative spectrum 64, 32 bands",
        "pooled relative spectrum 128, 32 bands", "pooled spectrum 128, 32 bands"]
    assert not any(n.startswith("pooled") for n in names((63, 1)))  # a frame at most a quarter of the window
    assert any(n.startswith("stats") for n in names((200, 6))) and not any(n.startswith("stats") for n in long)


@pytest.mark.host
def test_short_windows_keep_none():
    """28 steps whose class is the sign of the first half's mean: normalising throws that away."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 28, 1)).astype(np.float32)
    y = (x[:, :14, 0].mean(axis=1) > 0).astype(int)
    choice = fc.choose(from_arrays(x, y, None, None, "short"), "auto", Targets(), get_board(S3))
    assert choice.front is None and choice.how == "auto"
    scores = {c.name: c.score for c in choice.candidates}
    assert set(scores) == {"none", "normalize"} and scores["none"] > scores["normalize"]
    images = from_arrays(rng.normal(size=(40, 8, 8, 1)), np.arange(40) % 2, None, None, "img")
    assert fc.choose(images, "auto", Targets(), get_board(S3)).front is None


@pytest.mark.host
def test_long_windows_get_a_front_end_that_beats_none():
    x, y = long_windows(240, 1024, 6)
    data = from_arrays(x, y, None, None, "tones")
    choice = fc.choose(data, "auto", Targets(max_latency_ms=20), get_board(S3), seed=0)
    scores = {c.name: c for c in choice.candidates}
    assert choice.front is not None and any(isinstance(b, Spectrum) for b in choice.front.blocks)
    assert choice.chosen.score >= scores["none"].score + 0.3  # about 0.95 against 0.4
    assert choice.probe["on"] == "training windows only" and choice.probe["windows"] == len(data.x_train)
    report = choice.to_dict(Targets(max_latency_ms=20), get_board(S3))
    assert [c["name"] for c in report["candidates"]][0] == "none" and len(report["candidates"]) == 10
    assert all(c["score"] is not None for c in report["candidates"])
    assert report["network_targets"]["max_latency_ms"] < 20
    # the default 1 ms budget leaves no room for a full-rate spectrum: those are costed and marked,
    # and a cheap one is chosen: decimated with frames apart, or pooled over the frames that fit
    tight = fc.choose(data, "auto", Targets(), get_board(S3), seed=0)
    assert isinstance(tight.front.blocks[-1], Spectrum) and tight.chosen.score >= scores["none"].score + 0.3
    assert tight.chosen.latency_ms <= fc.latency_share(tight.front, [1024, 1]) * 1.0
    pooled = [c for c in tight.candidates if c.name.startswith("pooled")]
    assert len(pooled) == 4 and all(c.fits and c.latency_ms <= 0.85 and c.feature_shape[0] == 1 for c in pooled)
    full = [c for c in tight.candidates if c.name.startswith("normalize + spectrum")]
    assert len(full) == 2 and all(not c.fits and "does not fit" in c.note and c.score is None for c in full)


@pytest.mark.host
def test_two_windows_a_class_are_probed_on_every_labelled_window():
    """Split into one training and one validation window a class, the training windows alone
    can't be folded: the probe folds training and validation windows together (never the
    test windows) instead of keeping the raw window untested."""
    x, y = long_windows(24, 1024, 12)  # two windows a class
    data = from_arrays(x, y, None, None, "few", seed=0)
    assert np.bincount(np.asarray(data.y_train)).min() == 1
    choice = fc.choose(data, "auto", Targets(), get_board(S3), seed=0)
    assert choice.probe["on"].startswith("training and validation windows") and choice.probe["windows"] == 24
    assert choice.probe["folds"] == 2 and choice.front is not None and "24 labelled windows" in choice.reason
    assert choice.chosen.score >= {c.name: c for c in choice.candidates}["none"].score + 0.3


@pytest.mark.unit
def test_a_pooled_spectrum_takes_as_many_frames_as_its_share_allows():
    """thinned(): the most frames that fit all but SMALL_RESERVE of the latency budget, spread
    over the window; one more would not fit. Other front ends pass unchanged."""
    from tinydeploy.costs.frontend import frontend_cost, latency_ms_estimate
    board, window = get_board(S3), (2000, 1)
    front = Frontend((Spectrum(64, 32, 32, relative=True, pool=True),), input_scale=1e-3)
    cost = lambda f: latency_ms_estimate(frontend_cost(f, window), board.cpu_mhz)  # noqa: E731
    for budget in (1.0, 2.0):
        thin = fc.thinned(front, window, Targets(max_latency_ms=budget), board)
        frames = thin.blocks[0].frames_of(2000)
        assert 1 < frames < front.blocks[0].frames_of(2000) and thin.output_shape(window) == (1, 32)
        assert cost(thin) <= (1 - fc.SMALL_RESERVE) * budget
        hop = (2000 - 64) // frames
        assert cost(Frontend((Spectrum(64, hop, 32, relative=True, pool=True),), input_scale=1e-3)) \
            > (1 - fc.SMALL_RESERVE) * budget
    one = fc.thinned(front, window, Targets(max_latency_ms=0.01), board)  # nothing fits: a single frame
    assert one.blocks[0].frames_of(2000) == 1
    roomy = fc.thinned(front, window, Targets(max_latency_ms=100), board)
    assert roomy.blocks[0].hop == 32  # everything fits: half-overlapping frames over the whole window
    plain = Frontend((Normalize(), Spectrum(64, 32, 16)), input_scale=1e-3)
    assert fc.thinned(plain, window, Targets(), board) is plain


# ---- through optimize, evaluate and deploy ----

@pytest.fixture(scope="module")
def optimized(tmp_path_factory):
    """optimize on long windows with a pinned front end: the arch stage only, fast budget (about
    a minute: training.py's least number of steps for small sets is 600)."""
    from tinydeploy.optimize import OptimizeConfig, optimize
    x, y = long_windows(96, 512, 3)
    xt, yt = long_windows(48, 512, 3, seed=5)
    data = from_arrays(x, y, None, None, "tones").with_test(xt, yt, "test")
    out = tmp_path_factory.mktemp("fe-optimize")
    config = OptimizeConfig(data, out, get_board(S3), Targets(max_latency_ms=20), budget="fast",
                            stages=("arch", "final"))
    return data, optimize(config, front_end="normalize:log,spectrum:frame=64,hop=32,bands=16")


@pytest.mark.slow
def test_the_model_carries_labels_front_end_and_window(optimized):
    from tinydeploy.core.model import load_model
    data, result = optimized
    model = load_model(result.model_path)
    assert model.labels == tuple(data.labels)
    front, window = model_frontend(model.meta)
    assert window == (512, 1) and front.to_dict()["blocks"] == fc.parse_spec(
        "normalize:log,spectrum:frame=64,hop=32,bands=16").to_dict()["blocks"]
    quant = model.input_tensors[0].quantization
    assert (front.output.scale, front.output.zero_point) == (pytest.approx(quant.scales[0]), quant.zero_points[0])
    assert tuple(model.input_tensors[0].shape[1:]) == front.output_shape(window)
    report = json.loads((result.model_path.parent / "report.json").read_text())
    assert report["frontend"]["how"] == "pinned" and report["frontend"]["chosen"] == front.to_dict() | {"output": None}
    assert report["frontend"]["spec"] == "normalize:log,spectrum:frame=64,hop=32,bands=16"
    assert report["chosen"]["metadata"] == ["frontend", "labels", "window"]
    assert report["test"]["basis"].startswith("int8 model on the TFLM interpreter, after the front end")
    png = (result.model_path.parent / "frontend.png").read_bytes()
    assert png.startswith(b"\x89PNG") and report["frontend"]["plot"].endswith("frontend.png")
    assert "What the front end made" in (result.model_path.parent / "report.html").read_text()


@pytest.mark.slow
def test_evaluate_on_raw_windows_is_the_front_end_then_tflm(optimized):
    from tinydeploy.core.model import load_model
    from tinydeploy.runtime.evaluate import evaluate
    from tinydeploy.runtime.tflm import TflmRunner
    data, result = optimized
    model = load_model(result.model_path)
    front, _ = model_frontend(model.meta)
    measured = evaluate(model, data.x_test, data.y_test)
    by_hand = TflmRunner(model).predict_int8(front.quantized(data.x_test))
    assert np.array_equal(measured.outputs, by_hand)
    assert measured.accuracy == pytest.approx(float((by_hand.argmax(1) == data.y_test).mean()))
    assert result.report["test"]["accuracy"] == round(measured.accuracy, 5)
    assert measured.accuracy > 0.8  # the spectra tell three classes apart; 1-NN on the raw windows does not
    with pytest.raises(BadInput, match=r"or raw windows \(512, 1\) through its front end"):
        evaluate(model, data.x_test[:, :500], data.y_test)


@pytest.mark.slow
def test_evaluate_command_runs_the_front_end(optimized, tmp_path):
    data, result = optimized
    path = tmp_path / "raw.npz"
    np.savez(path, x_train=data.x_test, y_train=np.array(data.labels)[data.y_test], x_val=data.x_test,
             y_val=np.array(data.labels)[data.y_test])
    done = run_cli("evaluate", result.model_path, "--data", path, "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["accuracy"] == result.report["test"]["accuracy"] and shown["window"] == [512, 1]
    assert shown["basis"].startswith("the front end on the raw windows")


@pytest.mark.unit
def test_deploy_judges_accuracy_as_optimize_does():
    from tinydeploy.flows.deploy import _accuracy_verdicts
    chance = {"target": "accuracy vs chance", "measured": 0.2, "limit": 0.34, "unit": "", "basis": "default check",
              "at_least": True, "detail": "int8 test accuracy 0.333 ... includes chance"}
    report = {"chosen": {"accuracy_tflm": 0.33}, "accuracy_checks": {"verdicts": [chance]},
              "missed": ["accuracy vs chance: ...", "what would help: a signal front end (--front-end auto)"]}
    verdicts, advice = _accuracy_verdicts(report, None)
    assert [v.met for v in verdicts] == [False] and advice.startswith("what would help: a signal front end")
    verdicts, advice = _accuracy_verdicts(report, 0.3)  # --min-accuracy set lower replaces the checks
    assert [v.name for v in verdicts] == ["accuracy"] and verdicts[0].met and advice == ""


@pytest.mark.slow
def test_deploy_exits_1_on_a_chance_level_model(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.npz"
    # 500 windows, 100 of them validation: no cross-validation of widths (training.SMALL_VALIDATION)
    np.savez(path, x_train=rng.normal(size=(500, 16, 1)).astype(np.float32), y_train=rng.integers(0, 3, 500))
    done = run_cli("deploy", "--data", path, "--out", tmp_path / "out", "--budget", "fast", "--stages", "arch",
                   "--front-end", "none", "--max-latency-ms", "5", "--json", timeout=600)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    missed = [v["target"] for v in report["verdicts"] if not v["met"]]
    assert "accuracy vs chance" in missed and report["advice"].startswith("what would help")
    assert "accuracy vs chance" in done.stderr and "what would help" in done.stderr
