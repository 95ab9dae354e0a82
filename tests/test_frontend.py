"""The signal front end: the reference's properties (shapes, invariances, bands, averages,
statistics), its fixed point against float maths, and firmware/td_frontend.c built on the
host and fed many windows, equal to the reference byte for byte on every one."""

import ctypes
import json
import math
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinydeploy.codegen.frontend_source import frontend_sources
from tinydeploy.core import frontend as fe
from tinydeploy.core.errors import BadInput
from tinydeploy.core.frontend import Decimate, Frontend, Normalize, Spectrum, Stats
from tinydeploy.costs.frontend import frontend_cost

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["-std=c99", "-pedantic", "-O2", "-Wall", "-Wextra", "-Werror"]
DETERMINISTIC = settings(derandomize=True, deadline=None, database=None)


# ---- the integer helpers the C mirrors ----

@pytest.mark.unit
@DETERMINISTIC
@given(st.lists(st.integers(0, 2 ** 62 - 1), min_size=1, max_size=20))
def test_isqrt_is_exact(values):
    assert fe.isqrt(values).tolist() == [math.isqrt(v) for v in values]


@pytest.mark.unit
@DETERMINISTIC
@given(st.lists(st.integers(1, 2 ** 63 - 1), min_size=1, max_size=20))
def test_log2_q12_is_within_its_table_step(values):
    got = fe.log2_q12(values) / 4096
    want = np.array([math.log2(v) for v in values])
    assert np.all(got <= want + 1e-3) and np.all(want - got < 0.006)  # truncated mantissa: never above


@pytest.mark.unit
@DETERMINISTIC
@given(st.integers(-2 ** 40, 2 ** 40), st.integers(1, 2 ** 20), st.integers(1, 40))
def test_rounding_divisions_round_halves_up(a, b, n):
    assert int(fe.div_round(a, b)) == math.floor(Fraction(a, b) + Fraction(1, 2))
    assert int(fe.shift_round(a, n)) == math.floor(Fraction(a, 2 ** n) + Fraction(1, 2))


@pytest.mark.unit
@DETERMINISTIC
@given(st.integers(-2 ** 31 + 1, 2 ** 31 - 1), st.floats(1e-9, 1e5), st.integers(-128, 127))
def test_requantize_is_the_rounded_product(y, ratio, zero_point):
    multiplier, shift = fe.quantize_multiplier(ratio)
    got = int(fe.requantize(y, multiplier, shift, zero_point))
    want = min(127, max(-128, zero_point + y * ratio))
    assert abs(got - want) <= 0.5 + 1e-6 * abs(y * ratio) + 1e-9


@pytest.mark.unit
def test_quantize_multiplier_refuses_an_output_far_finer_than_a_feature():
    with pytest.raises(BadInput, match="finer"):
        fe.quantize_multiplier(2.0 ** 52)


@pytest.mark.unit
def test_quantize_input_rounds_halves_away_and_clips():
    x = np.array([0.5, -0.5, 1.5, -2.5, 0.49999997, 32766.5, 32767.4, 1e9, -1e9, np.inf, -np.inf, np.nan, -32768.6])
    assert fe.quantize_input(x, 1.0).tolist() == [1, -1, 2, -3, 0, 32767, 32767, 32767, -32768, 32767, -32768, 0,
                                                  -32768]


# ---- the reference's properties ----

@pytest.mark.unit
def test_normalize_is_exactly_invariant_to_an_offset_and_nearly_to_a_gain():
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(0, 300, size=(20, 500, 3)))
    front = Frontend((Normalize(),), input_scale=1.0)
    base = front.features_q(x)
    assert np.array_equal(front.features_q(x + 1234), base)  # whole steps: the mean moves exactly
    y = front.features(x)
    assert np.allclose(y.mean(axis=1), 0, atol=2e-3) and np.allclose(y.std(axis=1), 1, atol=2e-3)
    assert np.abs(front.features(3 * x) - y).max() < 0.01


@pytest.mark.unit
def test_a_constant_window_normalizes_to_zeros_and_keeps_its_log_floor():
    front = Frontend((Normalize(log_scale=True),), input_scale=0.5)
    out = front.features(np.full((40, 2), 7.0))
    assert np.array_equal(out[:40], np.zeros((40, 2)))
    assert np.allclose(out[40], math.log2(0.5 / 16))  # the spread read as 1/16 of a step
    spread = front.features(np.stack([np.arange(40.0) * 4, np.arange(40.0) * 40], axis=1))[40]
    assert np.allclose(spread, np.log2([np.arange(40.0).std() * 4, np.arange(40.0).std() * 40]), atol=0.01)


@pytest.mark.unit
def test_decimation_averages_groups_and_drops_the_rest():
    rng = np.random.default_rng(2)
    x = rng.integers(-30000, 30000, size=(5, 103, 2)).astype(float)
    got = Frontend((Decimate(4),), input_scale=1.0).features_q(x)
    want = np.floor(x[:, :100].reshape(5, 25, 4, 2).mean(axis=2) + 0.5)
    assert got.shape == (5, 25, 2) and np.array_equal(got, want)


@pytest.mark.unit
def test_stats_match_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(0.2, 1.5, size=(8, 301, 3))
    front = Frontend((Stats(fe.STATS, segments=3),), input_scale=1 / 1000)
    got = front.features(x).reshape(8, 3, len(fe.STATS), 3)
    q = np.round(x * 1000)[:, :300].reshape(8, 3, 100, 3) / 1000
    crossings = lambda s: (np.diff(s, axis=2) != 0).mean(axis=2)  # noqa: E731
    want = np.stack([q.mean(axis=2), q.std(axis=2), q.min(axis=2), q.max(axis=2), np.sqrt((q * q).mean(axis=2)),
                     crossings(q >= q.mean(axis=2, keepdims=True)), crossings(q >= 0)], axis=2)
    assert np.allclose(got, want, atol=1e-3)


@pytest.mark.unit
@pytest.mark.parametrize("spacing, rate, hz", [("linear", 100.0, 20.0), ("linear", None, 0.3 * 100), ("mel", 16000.0, 1000.0),
                                               ("mel", 16000.0, 5000.0)])
def test_a_pure_tone_lands_in_its_band(spacing, rate, hz):
    block = Spectrum(frame_length=256, hop=128, bands=16, spacing=spacing, sample_rate=rate)
    per_step = hz / (rate or 100.0)
    x = np.sin(2 * np.pi * per_step * np.arange(2048))[:, None]
    logs = Frontend((block,), input_scale=1 / 16000).features(x)  # [frames, bands]
    weights = block.band_weights()
    bin_ = per_step * 256
    expected = int(np.argmax(weights[int(round(bin_))]))
    assert np.all(np.argmax(logs, axis=1) == expected)
    assert np.all(logs[:, expected] - np.median(logs, axis=1) > 10)  # 30 dB above the median band


@pytest.mark.unit
@pytest.mark.parametrize("frame_length", [16, 256, 1024])
def test_fixed_point_spectrum_matches_float_maths(frame_length):
    """The integer FFT, power and log agree with numpy's float FFT where the energy is well above
    the fixed point's floor, at full scale too (no sum overflows)."""
    rng = np.random.default_rng(4)
    steps = 2 * frame_length
    block = Spectrum(frame_length=frame_length, hop=frame_length // 2, bands=8)
    scale = 1 / 1000
    windows = np.concatenate([rng.normal(0, 8, size=(3, steps, 1)),
                              np.clip(rng.normal(0, 40, size=(3, steps, 1)), -32.767, 32.767),
                              32.767 * np.sign(np.sin(np.arange(steps) / 3.0))[None, :, None]])
    got = Frontend((block,), input_scale=scale).features(windows)
    q = np.round(windows[:, :, 0] * 1000) * scale
    frames = np.stack([q[:, f * block.hop:f * block.hop + frame_length] for f in range(got.shape[1])], axis=1)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_length) / frame_length)
    power = np.abs(np.fft.rfft(frames * hann, axis=-1)) ** 2 / frame_length ** 2
    want = np.log2(power @ (block.band_weights() / 32768.0))
    strong = want > want.max() - 20
    assert strong.mean() > 0.5 and np.abs(got - want)[strong].max() < 0.02


@pytest.mark.unit
def test_mfcc_is_the_orthonormal_dct_of_the_log_mel_energies():
    base = dict(frame_length=256, hop=256, bands=20, spacing="mel", sample_rate=16000.0)
    x = np.random.default_rng(5).normal(0, 0.3, size=(1024, 1))
    logs = Frontend((Spectrum(**base),), input_scale=1 / 8000).features(x)
    mfcc = Frontend((Spectrum(**base, cepstra=13),), input_scale=1 / 8000).features(x)
    k, b = np.arange(13)[:, None], np.arange(20)[None, :]
    dct = np.cos(np.pi * k * (b + 0.5) / 20) * np.sqrt(2 / 20)
    dct[0] /= np.sqrt(2)
    assert np.allclose(mfcc, logs @ dct.T, atol=2e-3)


CHAINS = st.lists(st.sampled_from([Normalize(), Normalize(log_scale=True), Decimate(2), Decimate(3)]), max_size=4)
ENDS = st.sampled_from([None, Spectrum(frame_length=8, hop=3, bands=4), Spectrum(frame_length=16, hop=8, bands=6,
                                                                                 cepstra=3),
                        Spectrum(frame_length=8, hop=5, bands=4, relative=True, pool=True),
                        Stats(("mean", "zero_crossings"), segments=2), Stats()])


@pytest.mark.unit
@DETERMINISTIC
@given(CHAINS, ENDS, st.booleans(), st.integers(10, 200), st.integers(1, 4))
def test_output_shape_is_known_without_running(chain, end, flatten, steps, channels):
    """output_shape() gives the features' shape, or refuses a window too short as running it does."""
    front = Frontend(tuple(chain) + ((end,) if end else ()), input_scale=0.01, flatten=flatten)
    x = np.random.default_rng(steps).normal(size=(2, steps, channels))
    try:
        shape = front.output_shape((steps, channels))
    except BadInput as refused:
        with pytest.raises(BadInput, match=re.escape(str(refused))):
            front.features(x)
        return
    assert front.features(x).shape == (2, *shape)
    assert front.scales((steps, channels)).shape == front.output_shape((steps, channels))
    again = Frontend.from_dict(json.loads(json.dumps(front.to_dict())))
    assert again == front and np.array_equal(again.features_q(x), front.features_q(x))


@pytest.mark.unit
def test_to_dict_keeps_every_parameter_and_describe_names_them():
    front = Frontend((Decimate(4), Normalize(log_scale=True),
                      Spectrum(frame_length=128, hop=64, bands=10, spacing="mel", sample_rate=8000, low_hz=50,
                               high_hz=3000, cepstra=5)), input_scale=0.25, flatten=True).with_output(0.1, -3)
    data = json.loads(json.dumps(front.to_dict()))
    assert data["blocks"][2] == {"kind": "spectrum", "frame_length": 128, "hop": 64, "bands": 10, "spacing": "mel",
                                 "sample_rate": 8000, "low_hz": 50, "high_hz": 3000, "cepstra": 5}
    assert Frontend.from_dict(data) == front
    text = front.describe()
    for part in ("decimate by 4", "log2 of the spread", "10 mel bands 50-3000 Hz", "5 cepstra", "zero point -3"):
        assert part in text
    pooled = Frontend((Spectrum(frame_length=64, hop=100, bands=8, relative=True, pool=True),))
    data = json.loads(json.dumps(pooled.to_dict()))
    assert data["blocks"][0]["relative"] is True and data["blocks"][0]["pool"] is True
    assert Frontend.from_dict(data) == pooled
    assert "relative to the frame's mean band" in pooled.describe() and "averaged over the frames" in pooled.describe()
    assert pooled.output_shape((1000, 2)) == (1, 16)


@pytest.mark.unit
@pytest.mark.parametrize("make, message", [
    (lambda: Spectrum(frame_length=100), "frame_length must be a power of two from 8 to 4096, not 100"),
    (lambda: Spectrum(spacing="mel"), "mel bands need sample_rate"),
    (lambda: Spectrum(spacing="bark"), "spacing must be one of linear, mel, not 'bark'"),
    (lambda: Spectrum(frame_length=16, bands=9), "bands must be an integer from 1 to frame_length / 2 (8)"),
    (lambda: Spectrum(sample_rate=100, low_hz=40, high_hz=45, bands=4), "4 linear bands need as many FFT bins"),
    (lambda: Stats(("mean", "median")), "unknown: 'median'"),
    (lambda: Decimate(1), "factor must be an integer from 2 to 4096, not 1"),
    (lambda: Frontend((Stats(), Normalize())), "stats must be the last block"),
    (lambda: Frontend((Normalize(),), input_scale=0), "input_scale must be a positive number, not 0"),
    (lambda: Frontend.from_dict({"format": 1, "blocks": [{"kind": "wavelet"}]}),
     "unknown front-end block 'wavelet'; accepted: normalize, decimate, spectrum, stats"),
    (lambda: Frontend.from_dict({"format": 1, "blocks": [{"kind": "decimate", "size": 2}]}),
     "decimate has no parameter size; accepted: factor"),
    (lambda: Frontend((Spectrum(frame_length=64),)).output_shape((28, 1)), "need at least that many; the window has 28"),
    (lambda: Frontend((Normalize(),)).quantized(np.zeros((4, 1))), "call with_output"),
])
def test_bad_front_ends_say_what_is_accepted(make, message):
    with pytest.raises(BadInput) as caught:
        make()
    assert message in str(caught.value)


@pytest.mark.unit
def test_calibrated_output_spans_the_features():
    x = np.random.default_rng(6).normal(size=(30, 200, 2))
    front = Frontend((Normalize(), Stats(("min", "max"))), input_scale=0.001).calibrated(x)
    q = front.quantized(x)
    assert q.min() == -128 and q.max() == 127
    real = (q.astype(float) - front.output.zero_point) * front.output.scale
    assert np.abs(real - front.features(x)).max() <= front.output.scale / 2 + 1e-6


# ---- costs ----

@pytest.mark.unit
def test_costs_follow_the_plan():
    spectrum = Spectrum(frame_length=256, hop=128, bands=20, spacing="mel", sample_rate=16000, cepstra=13)
    front = Frontend((Normalize(log_scale=True), spectrum), input_scale=1e-3).with_output(0.1, 0)
    short, long = frontend_cost(front, (1024, 1)), frontend_cost(front, (4000, 3))
    assert long.scratch_bytes == 2 * 4000 * 3 + 4 * 3 + 4 * (2 * 256 + 20)
    assert long.input_bytes == 24000 and long.output_bytes == 31 * 39
    assert long.table_bytes == short.table_bytes  # tables depend on the chain, not the window
    assert frontend_cost(Frontend((Normalize(),)).with_output(0.1, 0), (4000, 3)).table_bytes == 512 + 2 * 5
    assert long.operations > 10 * short.operations  # 3 channels x 30 frames against 1 x 7
    assert long.flash_bytes_estimate == long.table_bytes + long.struct_bytes + long.code_bytes_estimate
    assert [what for what, _ in long.by_stage][-2:] == [spectrum.describe(), "requantise to int8"]
    assert "estimate" in long.describe()
    decimated = frontend_cost(Frontend((Decimate(4), Normalize()), input_scale=1e-3), (4000, 3))
    assert decimated.scratch_bytes == 2 * 1000 * 3  # the buffer holds the decimated window only
    stats_only = frontend_cost(Frontend((Stats(),)), (28, 2))
    assert stats_only.scratch_bytes == 0 and stats_only.work.square_roots == 2 * 2


@pytest.mark.unit
def test_generated_source_is_marked_guarded_and_its_tables_are_what_the_costs_count():
    front = Frontend((Decimate(2), Spectrum(frame_length=64, hop=32, bands=8, cepstra=4)), input_scale=0.01)
    front = front.with_output(0.05, 3)
    files = frontend_sources(front, (500, 2), folder="src/")
    assert set(files) == {"src/td_frontend_config.h", "src/td_frontend_config.c", "src/td_frontend.h",
                          "src/td_frontend.c"}
    header, source = files["src/td_frontend_config.h"], files["src/td_frontend_config.c"]
    assert all("generated by tinydeploy — do not edit" in text for text in files.values())
    assert "#ifndef TD_FRONTEND_CFG_H_" in header and header.rstrip().endswith("#endif /* TD_FRONTEND_CFG_H_ */")
    sizes = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4}
    declared = re.findall(r"static const (\w+) \w+\[(\d+)\] = \{", source)
    assert sum(sizes[t] * int(n) for t, n in declared if t in sizes) == frontend_cost(front, (500, 2)).table_bytes
    with pytest.raises(BadInput, match="'int' is not usable"):
        frontend_sources(front, (500, 2), name="int")


# ---- the C, on the host ----

@pytest.fixture(scope="module")
def c_library(tmp_path_factory):
    """firmware/td_frontend.c compiled once; each front end links its generated config to it."""
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler (cc)")
    folder = tmp_path_factory.mktemp("frontend")
    obj = folder / "td_frontend.o"
    subprocess.run(["cc", *FLAGS, "-fPIC", "-c", "-o", str(obj), str(ROOT / "firmware" / "td_frontend.c")], check=True)
    return folder, obj


class HostFrontend:
    """A front end's generated config linked with td_frontend.c into a shared library."""

    def __init__(self, front: Frontend, shape, folder: Path, obj: Path):
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in frontend_sources(front, shape, library=False).items():
            (folder / name).write_text(text)
        library = folder / "frontend.so"
        subprocess.run(["cc", *FLAGS, "-shared", "-fPIC", "-I", str(ROOT / "firmware"), "-o", str(library),
                        str(folder / "td_frontend_config.c"), str(obj)], check=True)
        self.lib = ctypes.CDLL(str(library))
        self.config = ctypes.addressof(ctypes.c_char.in_dll(self.lib, "td_frontend_cfg"))
        self.lib.td_frontend_scratch_bytes.restype = ctypes.c_size_t
        self.lib.td_frontend_scratch_bytes.argtypes = [ctypes.c_void_p]
        self.lib.td_frontend_quantize.argtypes = [ctypes.c_void_p] * 3
        for name in ("td_frontend_features", "td_frontend_run"):
            getattr(self.lib, name).argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_size_t]
        self.shape = tuple(shape)
        self.out_shape = front.output_shape(shape)
        self.scratch_bytes = self.lib.td_frontend_scratch_bytes(self.config)

    def quantize(self, window: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(window, np.float32)
        samples = np.zeros(self.shape, np.int16)
        self.lib.td_frontend_quantize(self.config, x.ctypes.data, samples.ctypes.data)
        return samples

    def _call(self, name: str, window: np.ndarray, dtype) -> np.ndarray:
        samples = self.quantize(window)
        out = np.zeros(self.out_shape, dtype)
        canary = 0x5A5A5A5A
        scratch = np.full(self.scratch_bytes // 4 + 16, canary, np.int32)
        rc = getattr(self.lib, name)(self.config, samples.ctypes.data, out.ctypes.data, scratch.ctypes.data,
                                     self.scratch_bytes)
        assert rc == 0 and np.all(scratch[self.scratch_bytes // 4:] == canary), "wrote past its scratch"
        return out

    def features(self, window):
        return self._call("td_frontend_features", window, np.int32)

    def run(self, window):
        return self._call("td_frontend_run", window, np.int8)


def signal_windows(count: int, steps: int, channels: int, scale: float, seed: int) -> np.ndarray:
    """Windows of every kind a sensor gives, each channel its own: noise at every amplitude,
    tones, chirps, transients, clipping, constants (spread 0), specials (inf, NaN), square waves."""
    rng = np.random.default_rng(seed)
    full = 32767 * scale
    t = np.arange(steps, dtype=float)
    out = np.zeros((count, steps, channels))

    def one(kind: int) -> np.ndarray:
        amp = full * 10 ** rng.uniform(-4.5, 0)
        if kind == 0:
            return rng.normal(rng.normal(0, amp / 4), amp / 3, steps)
        if kind == 1:
            return amp * np.sin(2 * np.pi * rng.uniform(0, 0.5) * t + rng.uniform(0, 6.3)) + rng.normal(0, amp / 50, steps)
        if kind == 2:
            f0, f1 = rng.uniform(0, 0.5, 2)
            return amp * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * steps)))
        if kind == 3:
            x = np.zeros(steps)
            x[rng.integers(steps)] = rng.choice([full, -full, amp, 3 * full])
            return x
        if kind == 4:
            return rng.normal(0, 3 * full, steps)  # clips at the input scale
        if kind == 5:
            return np.full(steps, rng.choice([0.0, scale * 0.4, -full, 2 * full, rng.normal(0, full)]))
        if kind == 6:
            x = rng.normal(0, full / 2, steps)
            x[rng.integers(steps, size=3)] = [np.inf, -np.inf, np.nan]
            return x
        if kind == 7:
            period = rng.integers(1, 9)
            return full * np.where((t // period) % 2 == 0, 1.0, -1.0)
        return rng.uniform(-0.6, 0.6, steps) * scale  # below one step: 0 and +-1
    for i in range(count):
        for c in range(channels):
            out[i, :, c] = one(int(rng.integers(9)) if i >= 9 else (i + c) % 9)
    return out


CASES = {
    # id: (front end, (steps, channels), windows)
    "passthrough-28x3": (Frontend((), input_scale=0.01), (28, 3), 120),
    "normalize-28x1": (Frontend((Normalize(log_scale=True),), input_scale=0.01), (28, 1), 200),
    "normalize-4000x3": (Frontend((Normalize(),), input_scale=1 / 4096), (4000, 3), 30),
    "decimate-4000x3": (Frontend((Decimate(7),), input_scale=0.01), (4000, 3), 30),
    "decimate-twice-28x2": (Frontend((Decimate(3), Decimate(2)), input_scale=0.01), (28, 2), 150),
    "spectrum-28x2": (Frontend((Spectrum(frame_length=16, hop=4, bands=5),), input_scale=0.01), (28, 2), 150),
    "mfcc-4000x1": (Frontend((Spectrum(frame_length=256, hop=128, bands=24, spacing="mel", sample_rate=16000,
                                       cepstra=13),), input_scale=1 / 32767), (4000, 1), 40),
    "spectrum-1024-4000x3": (Frontend((Spectrum(frame_length=1024, hop=512, bands=12, sample_rate=400, low_hz=5,
                                                high_hz=150),), input_scale=1 / 2000), (4000, 3), 20),
    "spectrum-relative-28x2": (Frontend((Spectrum(frame_length=16, hop=4, bands=5, relative=True),),
                                        input_scale=0.01), (28, 2), 150),
    "spectrum-pooled-2000x1": (Frontend((Spectrum(frame_length=128, hop=267, bands=32, pool=True),),
                                        input_scale=1 / 4096), (2000, 1), 60),
    "spectrum-relative-pooled-1500x3": (Frontend((Spectrum(frame_length=64, hop=200, bands=16, relative=True,
                                                           pool=True),), input_scale=1 / 2000), (1500, 3), 40),
    "mfcc-relative-pooled-4000x1": (Frontend((Spectrum(frame_length=256, hop=128, bands=24, spacing="mel",
                                                       sample_rate=16000, cepstra=13, relative=True, pool=True),),
                                             input_scale=1 / 32767), (4000, 1), 40),
    "stats-28x3": (Frontend((Stats(fe.STATS, segments=3),), input_scale=0.01), (28, 3), 200),
    "stats-4000x9": (Frontend((Stats(),), input_scale=1 / 1000), (4000, 9), 20),
    "chain-decimate-normalize-spectrum-4000x3": (
        Frontend((Decimate(2), Normalize(log_scale=True), Spectrum(frame_length=64, hop=32, bands=8, spacing="mel",
                                                                    sample_rate=500)),
                 input_scale=1 / 1000, flatten=True), (4000, 3), 30),
    "chain-normalize-stats-28x2": (Frontend((Normalize(log_scale=True), Stats(("std", "max", "mean_crossings"))),
                                            input_scale=0.05), (28, 2), 200),
    "chain-normalize-decimate-4000x1": (Frontend((Normalize(log_scale=True), Decimate(8)), input_scale=1 / 500,
                                                 flatten=True), (4000, 1), 30),
}


@pytest.mark.host
@pytest.mark.parametrize("case", list(CASES))
def test_the_c_equals_the_reference_byte_for_byte(case, c_library):
    front, shape, count = CASES[case]
    windows = signal_windows(count, *shape, front.input_scale, seed=len(case))
    front = front.calibrated(windows)
    folder, obj = c_library
    host = HostFrontend(front, shape, folder / case, obj)
    assert host.scratch_bytes == front.plan(shape).scratch_bytes == frontend_cost(front, shape).scratch_bytes
    want_q, want_8 = front.features_q(windows), front.quantized(windows)
    assert len(np.unique(want_8)) > 20  # the windows reach across the int8 range
    for i, window in enumerate(windows):
        assert host.quantize(window).tobytes() == fe.quantize_input(window, front.input_scale).tobytes(), i
        assert host.features(window).tobytes() == want_q[i].tobytes(), f"window {i}: int32 features differ"
        assert host.run(window).tobytes() == want_8[i].tobytes(), f"window {i}: int8 features differ"


@pytest.mark.host
def test_the_c_saturates_and_shifts_left_like_the_reference(c_library):
    """An output scale finer than the rows' (left shifts) and one far coarser (multiplier 0)."""
    folder, obj = c_library
    shape = (60, 2)
    windows = signal_windows(60, *shape, 0.01, seed=7)
    for name, (scale, zero_point) in {"fine": (0.01 / 8, -5), "coarse": (1e12, 100)}.items():
        front = Frontend((Stats(fe.STATS),), input_scale=0.01).with_output(scale, zero_point)
        host = HostFrontend(front, shape, folder / f"requant-{name}", obj)
        want = front.quantized(windows)
        for i, window in enumerate(windows):
            assert host.run(window).tobytes() == want[i].tobytes(), f"{name} window {i}"


@pytest.mark.host
@pytest.mark.parametrize("flags", [["-O0"], ["-O3", "-ffp-contract=fast", "-funroll-loops"]])
def test_the_c_is_exact_at_any_optimisation(c_library, flags):
    """No result depends on the compiler's freedom: contraction into multiply-adds, unrolling."""
    folder, _ = c_library
    name = "".join(flags).replace("-", "")
    obj = folder / f"td_frontend{name}.o"
    subprocess.run(["cc", *FLAGS, *flags, "-fPIC", "-c", "-o", str(obj), str(ROOT / "firmware" / "td_frontend.c")],
                   check=True)
    shape = (600, 2)
    front = Frontend((Decimate(2), Normalize(log_scale=True), Spectrum(frame_length=32, hop=16, bands=6, cepstra=4)),
                     input_scale=0.01)
    windows = signal_windows(40, *shape, 0.01, seed=8)
    front = front.calibrated(windows)
    host = HostFrontend(front, shape, folder / f"flags{name}", obj)
    want = front.quantized(windows)
    for i, window in enumerate(windows):
        assert host.run(window).tobytes() == want[i].tobytes(), f"window {i}"


@pytest.mark.host
def test_the_c_refuses_a_small_scratch(c_library):
    folder, obj = c_library
    front = Frontend((Normalize(), Spectrum(frame_length=16, hop=8, bands=4)), input_scale=0.01).with_output(0.1, 0)
    host = HostFrontend(front, (28, 1), folder / "small-scratch", obj)
    samples = np.zeros((28, 1), np.int16)
    out = np.full(host.out_shape, 7, np.int8)
    scratch = np.zeros(host.scratch_bytes // 4, np.int32)
    assert host.lib.td_frontend_run(host.config, samples.ctypes.data, out.ctypes.data, scratch.ctypes.data,
                                    host.scratch_bytes - 4) == -1
    assert np.all(out == 7)


@pytest.mark.host
@settings(derandomize=True, deadline=None, database=None, max_examples=60)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=40, max_size=40),
       st.sampled_from([1e-3, 1 / 3, 1.0, 7.25]))
def test_the_c_quantises_any_float_like_the_reference(c_library, values, scale):
    folder, obj = c_library
    key = f"quantise-{scale}"
    if key not in HOSTS:
        HOSTS[key] = HostFrontend(Frontend((), input_scale=scale), (40, 1), folder / key, obj)
    window = np.array(values, np.float32)[:, None]
    assert HOSTS[key].quantize(window).tobytes() == fe.quantize_input(window, scale).tobytes()


HOSTS: dict = {}


@pytest.mark.host
def test_the_docs_examples_run_and_compile(c_library, tmp_path):
    """docs/frontend.md's Python runs, and its C compiles against the files the Python generated."""
    text = (ROOT / "docs" / "frontend.md").read_text()
    python, c = re.findall(r"```python\n(.*?)```", text, re.S), re.findall(r"```c\n(.*?)```", text, re.S)
    assert len(python) == 1 and len(c) == 1
    namespace: dict = {}
    exec(compile(python[0], "docs/frontend.md", "exec"), namespace)
    for name, content in namespace["files"].items():
        (tmp_path / name).write_text(content)
    (tmp_path / "example.c").write_text(c[0])
    subprocess.run(["cc", *FLAGS, "-c", "-o", str(tmp_path / "example.o"), str(tmp_path / "example.c")],
                   check=True, cwd=tmp_path)
    subprocess.run(["cc", *FLAGS, "-c", "td_frontend_config.c", "td_frontend.c"], check=True, cwd=tmp_path)


@pytest.mark.host
def test_the_flash_estimates_are_the_riscv_builds(rv32_tools, tmp_path):
    """The structs' ILP32 sizes are exact, and the code estimate is rv32imc's -O2 .text (within 10%)."""
    from tinydeploy.costs import frontend as costs
    flags = ["-march=rv32imc", "-mabi=ilp32", "--specs=picolibc.specs", "-std=c99", "-O2", "-I", str(ROOT / "firmware")]
    (tmp_path / "sizes.c").write_text(
        '#include "td_frontend.h"\n'
        f"typedef char block_size[sizeof(td_frontend_block) == {costs.BLOCK_STRUCT_BYTES} ? 1 : -1];\n"
        f"typedef char config_size[sizeof(td_frontend_config) == {costs.CONFIG_STRUCT_BYTES} ? 1 : -1];\n"
        "block_size *b;\nconfig_size *c;\n")
    subprocess.run(["riscv64-unknown-elf-gcc", *flags, "-c", "-o", str(tmp_path / "sizes.o"), str(tmp_path / "sizes.c")],
                   check=True)
    obj = tmp_path / "td_frontend.o"
    subprocess.run(["riscv64-unknown-elf-gcc", *flags, "-c", "-o", str(obj), str(ROOT / "firmware" / "td_frontend.c")],
                   check=True)
    text = int(subprocess.run(["riscv64-unknown-elf-size", str(obj)], capture_output=True, text=True,
                              check=True).stdout.splitlines()[1].split()[0])
    assert abs(text - costs.CODE_BYTES_ESTIMATE) <= 0.1 * costs.CODE_BYTES_ESTIMATE, text


@pytest.mark.unit
def test_the_report_plot_draws_one_row_features_as_bars(monkeypatch):
    """frontend_png: a pooled spectrum's single row is drawn as bars (an image one pixel wide says
    nothing), several rows as an image; both are PNGs."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.axes import Axes
    from tinydeploy.core.report import frontend_png
    windows = np.random.default_rng(0).normal(size=(2, 300, 1))
    drawn, real_bar = [], Axes.bar
    monkeypatch.setattr(Axes, "bar", lambda self, x, *a, **k: drawn.append(len(x)) or real_bar(self, x, *a, **k))
    one_row = frontend_png(windows, np.ones((2, 1, 32)), ["a", "b"], "pooled")
    rows = frontend_png(windows, np.ones((2, 8, 16)), ["a", "b"], "framed")
    assert one_row[:8] == rows[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn == [32, 32]  # one bar chart of 32 values a class, none for the framed features
