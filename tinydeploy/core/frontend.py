"""Signal front ends: the processing between a raw sensor window and a small network.

A front end is a chain of blocks from a float window shaped [steps, channels] to int8
features. The window is quantised once, on entry, to int16 samples with a stated input
scale (real value = sample * input_scale); from there every block is integer arithmetic,
and ``firmware/td_frontend.c`` performs the same integer operations, so the device and this
reference agree byte for byte on every window. Every constant the two share (tables,
offsets, multipliers) is computed here once and emitted as C by
``tinydeploy.codegen.frontend_source``. docs/frontend.md explains the arithmetic.

The blocks, in the order a chain may hold them:

- time-domain blocks, int16 samples in and out: ``Normalize`` (per window and channel)
  and ``Decimate`` (average pooling by an integer factor);
- at most one feature block, last: ``Spectrum`` (framed FFT -> linear or mel band
  energies -> log2, optionally a DCT: MFCC) or ``Stats`` (per-channel statistics).

Features are int32 fixed point with a real scale per row; the last step maps them to int8
with the network input's (scale, zero point), one multiplier per row.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

import numpy as np

from tinydeploy.core.errors import BadInput

FORMAT = 1  # to_dict()'s layout; from_dict refuses others
SAMPLE_MIN, SAMPLE_MAX = -32768, 32767  # the int16 samples every time-domain block holds
MAX_STEPS = 1 << 20  # keeps every sum of squares inside int64 (see Normalize.run)
MAX_CHANNELS = 64
Q15 = 15
LOG_BITS = 12  # log2 values are Q12 ...
LOG_TABLE_BITS = 8  # ... from a 256-entry table of log2(1 + i/256)
NORM_BITS = 9  # normalised samples are Q9 in units of the window's spread: +-64 spreads fit int16
STAT_BITS = 4  # means, spreads and RMS keep 4 fractional bits of an input step
MIN_FRAME, MAX_FRAME = 8, 4096  # a 4096-point FFT of int16 input stays below 2**28 with no scaling
MAX_LEFT_SHIFT = 20  # so a row's scale may be up to 2**50 times the output's (quantize_multiplier)


# ---- integer arithmetic shared with td_frontend.c (every function here has a C twin) ----

def shift_round(x, n: int):
    """floor((x + 2**(n-1)) / 2**n): a right shift rounding halves up (td_fe_shift_round)."""
    return (np.asarray(x, np.int64) + (1 << (n - 1))) >> n


def div_round(a, b):
    """a / b rounded to nearest, halves up, for b > 0: floor((2a + b) / 2b) (td_fe_div_round)."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    return (2 * a + b) // (2 * b)


def isqrt(v):
    """floor(sqrt(v)) of non-negative int64 values below 2**62, exactly (td_fe_isqrt)."""
    v = np.asarray(v, np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    for _ in range(2):  # the float estimate is off by at most one either way
        r = np.where(r * r > v, r - 1, r)
        r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


def log2_table() -> np.ndarray:
    """round(log2(1 + i/256) * 2**12) for i in 0..255: the mantissa part of log2_q12."""
    i = np.arange(1 << LOG_TABLE_BITS, dtype=np.float64)
    return np.round(np.log2(1.0 + i / (1 << LOG_TABLE_BITS)) * (1 << LOG_BITS)).astype(np.uint16)


_LOG2_TABLE = log2_table()


def log2_q12(v):
    """log2(v) in Q12 for non-negative int64 v, v = 0 read as 1 (td_fe_log2_q12): the
    leading bit's position, plus the table's value for the next 8 bits (error < 0.006)."""
    v = np.maximum(np.asarray(v, np.int64), 1)
    p = np.zeros(v.shape, np.int64)
    rest = v.copy()
    for step in (32, 16, 8, 4, 2, 1):
        big = rest >= (np.int64(1) << step)
        p += np.where(big, step, 0)
        rest = np.where(big, rest >> step, rest)
    mantissa = np.where(p >= LOG_TABLE_BITS, v >> np.maximum(p - LOG_TABLE_BITS, 0),
                        v << np.maximum(LOG_TABLE_BITS - p, 0)) & ((1 << LOG_TABLE_BITS) - 1)
    return p * (1 << LOG_BITS) + _LOG2_TABLE[mantissa].astype(np.int64)


def q15(values) -> np.ndarray:
    """Reals in [-1, 1] as Q15 int16 (1.0 becomes 32767)."""
    return np.clip(np.round(np.asarray(values, np.float64) * (1 << Q15)), -32768, 32767).astype(np.int16)


def quantize_multiplier(ratio: float) -> tuple[int, int]:
    """(multiplier, shift) with y * ratio ~= y * multiplier / 2**shift, multiplier in [2**30, 2**31).

    Args:
        ratio: a row's real scale over the output's scale (> 0).
    Returns:
        (multiplier, shift); shift may be <= 0 (a left shift) down to -MAX_LEFT_SHIFT + 1,
        and a ratio too small to move any int32 feature gives (0, 1).
    """
    mantissa, exponent = math.frexp(ratio)
    multiplier = round(mantissa * (1 << 31))
    if multiplier == 1 << 31:
        multiplier, exponent = multiplier // 2, exponent + 1
    shift = 31 - exponent
    if shift > 62:  # |y * multiplier| < 2**62: rounds to 0 for every int32 y
        return 0, 1
    if shift < 1 - MAX_LEFT_SHIFT:
        raise BadInput(f"output scale is {ratio:.3g} times finer than a feature's step; "
                       f"at most 2**{30 + MAX_LEFT_SHIFT} is accepted")
    return multiplier, shift


def requantize(y, multiplier, shift, zero_point: int) -> np.ndarray:
    """int32 features -> int8: zero_point + y * multiplier / 2**shift, rounded, saturated
    (td_fe_requantize). A left shift first clamps |y| to 512, past which int8 saturates anyway."""
    y = np.asarray(y, np.int64)
    multiplier = np.asarray(multiplier, np.int64)
    shift = np.asarray(shift, np.int64)
    left = shift < 1
    y = np.where(left, np.clip(y, -512, 512) << np.maximum(1 - shift, 0), y)
    shift = np.where(left, 1, shift)
    out = ((y * multiplier + (np.int64(1) << (shift - 1))) >> shift) + zero_point
    return np.clip(out, -128, 127).astype(np.int8)


def quantize_input(windows, input_scale: float) -> np.ndarray:
    """Float samples -> int16 with real = sample * input_scale (td_frontend_quantize).

    One float32 multiply by the float32 reciprocal (IEEE rounding, the same on the host and
    the device), then rounding halves away from zero; values outside int16 clip and NaN
    reads as 0.
    """
    inverse = np.float32(1.0 / input_scale)
    with np.errstate(over="ignore", invalid="ignore"):  # huge values clip and NaN reads 0, as in the C
        v = (np.asarray(windows, np.float32) * inverse).astype(np.float64)
    rounded = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.where(np.isnan(v), 0, np.clip(np.nan_to_num(rounded), SAMPLE_MIN, SAMPLE_MAX)).astype(np.int16)


def input_scale_for(windows) -> float:
    """The input scale that maps the largest finite |value| in windows to int16's 32767.

    Args:
        windows: float samples, any shape.
    Returns:
        The scale (1.0 when every value is 0).
    """
    x = np.asarray(windows, np.float64)
    finite = np.abs(x[np.isfinite(x)])
    peak = float(finite.max()) if finite.size else 0.0
    return peak / SAMPLE_MAX if peak > 0 else 1.0


# ---- blocks ----

def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Block(ABC):
    """One step of a front end. Subclasses are frozen dataclasses whose fields are the
    block's parameters; ``kind`` names it in to_dict() and ``code`` in the C config."""

    kind: ClassVar[str] = ""
    code: ClassVar[int] = 0
    c_kind: ClassVar[str] = ""
    ends_chain: ClassVar[bool] = False  # a feature block: the chain's last

    def __post_init__(self):
        problems = self.problems()
        if problems:
            raise BadInput(f"{self.kind}: " + "; ".join(problems))

    def problems(self) -> list[str]:
        return []

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict[str, Any]:
        """{"kind": ..., parameter: value, ...}, plain JSON types."""
        return {"kind": self.kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in self.params().items()}}

    @abstractmethod
    def output_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        ...

    def extra_rows(self) -> int:
        """Per-channel values this block adds to the end of the features (Normalize's log-scale)."""
        return 0

    @abstractmethod
    def describe(self) -> str:
        ...

    def constants(self, shape: tuple[int, int], scale: float) -> dict[str, Any]:
        """The integers and integer tables the reference and the C share, for this input shape and scale."""
        return {}


@dataclass(frozen=True)
class Normalize(Block):
    """Per window and channel: subtract the mean, divide by the spread (standard deviation).

    Output samples are Q9 in units of the spread, so +-64 spreads fit (a window of up to
    4097 steps cannot reach more). A channel whose spread is 0 becomes zeros.

    Args:
        log_scale: also keep log2 of the window's spread (in real input units) per channel,
            as one extra feature row, since magnitude can matter.
    """

    log_scale: bool = False
    kind: ClassVar[str] = "normalize"
    code: ClassVar[int] = 1
    c_kind: ClassVar[str] = "TD_FRONTEND_NORMALIZE"

    def problems(self):
        return [] if isinstance(self.log_scale, bool) else [f"log_scale must be true or false, not {self.log_scale!r}"]

    def output_shape(self, shape):
        return shape

    def extra_rows(self):
        return int(self.log_scale)

    def out_scale(self, scale: float) -> float:
        return 2.0 ** -NORM_BITS

    def describe(self):
        return "normalize per window and channel" + (", keeping log2 of the spread" if self.log_scale else "")

    def constants(self, shape, scale):
        # log2(spread in real units) = log2(spread in Q4 steps) - 4 + log2(scale)
        return {"log_offset_q12": -STAT_BITS * (1 << LOG_BITS) + round(math.log2(scale) * (1 << LOG_BITS))}

    def run(self, x: np.ndarray, constants: dict) -> tuple[np.ndarray, np.ndarray | None]:
        steps = x.shape[1]
        mean4 = div_round(16 * x.sum(axis=1, keepdims=True), steps)
        d4 = 16 * x - mean4  # |d4| < 2**21
        spread4 = isqrt(div_round((d4 * d4).sum(axis=1, keepdims=True), steps))  # sum < 2**62 for steps <= 2**20
        y = np.where(spread4 > 0, div_round(d4 << NORM_BITS, np.maximum(spread4, 1)), 0)
        extra = log2_q12(spread4[:, 0, :]) + constants["log_offset_q12"] if self.log_scale else None
        return np.clip(y, SAMPLE_MIN, SAMPLE_MAX), extra


@dataclass(frozen=True)
class Decimate(Block):
    """Average pooling over time by an integer factor; the last steps % factor are dropped.

    Args:
        factor: steps averaged into one (2..4096).
    """

    factor: int = 2
    kind: ClassVar[str] = "decimate"
    code: ClassVar[int] = 2
    c_kind: ClassVar[str] = "TD_FRONTEND_DECIMATE"

    def problems(self):
        if not _is_int(self.factor) or not 2 <= self.factor <= 4096:
            return [f"factor must be an integer from 2 to 4096, not {self.factor!r}"]
        return []

    def output_shape(self, shape):
        steps, channels = shape
        if steps < self.factor:
            raise BadInput(f"decimate by {self.factor} needs at least {self.factor} steps; the window has {steps}")
        return steps // self.factor, channels

    def out_scale(self, scale: float) -> float:
        return scale

    def describe(self):
        return f"decimate by {self.factor} (average)"

    def run(self, x, constants):
        n, steps, channels = x.shape
        kept = steps // self.factor
        sums = x[:, :kept * self.factor].reshape(n, kept, self.factor, channels).sum(axis=2)
        return div_round(sums, self.factor), None


def hz_to_mel(hz):
    """The mel scale m = 2595 * log10(1 + f / 700) (O'Shaughnessy, Speech Communication, 1987)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


SPACINGS = ("linear", "mel")


@dataclass(frozen=True)
class Spectrum(Block):
    """Framed spectrum: Hann-windowed frames -> integer FFT -> power -> band energies -> log2.

    Band energies use rectangular bands of equal width (linear) or triangular filters
    centred on mel-spaced frequencies (mel), and are given as log2 of the energy per
    frame in real units (one row per frame). With cepstra > 0 an orthonormal DCT-II of
    the log energies keeps that many coefficients (MFCC for mel bands).
    Edge Impulse's spectral-analysis and MFE/MFCC blocks follow the same recipe.

    Args:
        frame_length: FFT length, a power of two from 8 to 4096.
        hop: steps between frame starts.
        bands: number of bands (<= frame_length / 2).
        spacing: "linear" or "mel" (mel needs sample_rate).
        sample_rate: samples per second of the block's input, when known.
        low_hz, high_hz: the bands' range (default 0 to sample_rate / 2); need sample_rate.
        cepstra: DCT coefficients kept per frame and channel (0: none, the log energies).
        relative: subtract each frame's mean log energy over its bands (per channel) from
            its bands, before the DCT: the spectrum's shape without its level, a gain-free
            feature for a fraction of a time-domain normalisation's cost.
        pool: average the frames' features (per channel) into one row: a spectrum of the
            whole window that does not depend on where in it an event falls, and few features.
    """

    frame_length: int = 64
    hop: int = 32
    bands: int = 16
    spacing: str = "linear"
    sample_rate: float | None = None
    low_hz: float | None = None
    high_hz: float | None = None
    cepstra: int = 0
    relative: bool = False
    pool: bool = False
    kind: ClassVar[str] = "spectrum"
    code: ClassVar[int] = 3
    c_kind: ClassVar[str] = "TD_FRONTEND_SPECTRUM"
    ends_chain: ClassVar[bool] = True

    def problems(self):
        found = []
        n = self.frame_length
        if not _is_int(n) or n < MIN_FRAME or n > MAX_FRAME or n & (n - 1):
            found.append(f"frame_length must be a power of two from {MIN_FRAME} to {MAX_FRAME}, not {n!r}")
            n = 0
        if not _is_int(self.hop) or not 1 <= self.hop <= 65535:
            found.append(f"hop must be an integer from 1 to 65535, not {self.hop!r}")
        if not _is_int(self.bands) or self.bands < 1 or (n and self.bands > n // 2):
            found.append(f"bands must be an integer from 1 to frame_length / 2 ({n // 2 if n else '?'}), "
                         f"not {self.bands!r}")
        if self.spacing not in SPACINGS:
            found.append(f"spacing must be one of {', '.join(SPACINGS)}, not {self.spacing!r}")
        rate = self.sample_rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                                 or not math.isfinite(rate) or rate <= 0):
            found.append(f"sample_rate must be a positive number, not {rate!r}")
            rate = None
        if self.spacing == "mel" and self.sample_rate is None:
            found.append("mel bands need sample_rate")
        for name in ("low_hz", "high_hz"):
            value = getattr(self, name)
            if value is not None and self.sample_rate is None:
                found.append(f"{name} needs sample_rate")
            elif value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                found.append(f"{name} must be a number, not {value!r}")
        if rate and not found:
            low, high = self._range()
            if not 0 <= low < high <= rate / 2:
                found.append(f"low_hz and high_hz must satisfy 0 <= low < high <= sample_rate / 2 "
                             f"({rate / 2:g}), not {low:g} and {high:g}")
        if not _is_int(self.cepstra) or self.cepstra < 0 or (_is_int(self.bands) and self.cepstra > self.bands):
            found.append(f"cepstra must be an integer from 0 to bands ({self.bands!r}), not {self.cepstra!r}")
        for name in ("relative", "pool"):
            if not isinstance(getattr(self, name), bool):
                found.append(f"{name} must be true or false, not {getattr(self, name)!r}")
        if not found and self.spacing == "linear":
            first, last = self._linear_bins()
            if last - first + 1 < self.bands:
                found.append(f"{self.bands} linear bands need as many FFT bins; {self._range_text()} holds "
                             f"{max(last - first + 1, 0)} of a {self.frame_length}-point frame")
        return found

    def _range(self) -> tuple[float, float]:
        low = float(self.low_hz) if self.low_hz is not None else 0.0
        high = float(self.high_hz) if self.high_hz is not None else self.sample_rate / 2
        return low, high

    def _range_text(self) -> str:
        if self.sample_rate is None:
            return "the whole band"
        low, high = self._range()
        return f"{low:g}-{high:g} Hz"

    def _linear_bins(self) -> tuple[int, int]:
        """First and last FFT bin the linear bands cover (DC is left out)."""
        half = self.frame_length // 2
        if self.sample_rate is None:
            return 1, half
        low, high = self._range()
        per_bin = self.sample_rate / self.frame_length
        return max(1, math.ceil(low / per_bin - 1e-9)), min(half, math.floor(high / per_bin + 1e-9))

    def to_dict(self) -> dict[str, Any]:
        """Block.to_dict(), leaving out relative and pool when they are off, so that the dicts
        of front ends made before they existed (in models and run fingerprints) stay as they were."""
        out = super().to_dict()
        for name in ("relative", "pool"):
            if not out[name]:
                del out[name]
        return out

    @property
    def features(self) -> int:
        return self.cepstra or self.bands

    def output_shape(self, shape):
        steps, channels = shape
        if steps < self.frame_length:
            raise BadInput(f"spectrum frames of {self.frame_length} steps need at least that many; "
                           f"the window has {steps}")
        return (1 if self.pool else self.frames_of(steps)), channels * self.features

    def frames_of(self, steps: int) -> int:
        """Frames computed on a window of this many steps."""
        return 1 + (steps - self.frame_length) // self.hop

    def row_scales(self, scale: float) -> np.ndarray:
        """The real scale of each row, repeating: every row is log2 in Q12."""
        return np.array([2.0 ** -LOG_BITS])

    def describe(self):
        bands = f"{self.bands} {self.spacing} bands"
        if self.sample_rate is not None:
            low, high = self._range()
            bands += f" {low:g}-{high:g} Hz at {self.sample_rate:g} Hz"
        tail = (", relative to the frame's mean band" if self.relative else "") \
            + (f", DCT to {self.cepstra} cepstra" if self.cepstra else "") \
            + (", averaged over the frames" if self.pool else "")
        return f"spectrum: {self.frame_length}-point frames every {self.hop} steps, {bands}, log2{tail}"

    def band_weights(self) -> np.ndarray:
        """[frame_length / 2 + 1, bands] weights in Q15 (32768 = 1), as int64."""
        half = self.frame_length // 2
        weights = np.zeros((half + 1, self.bands), np.float64)
        if self.spacing == "linear":
            first, last = self._linear_bins()
            edges = np.round(np.linspace(first, last + 1, self.bands + 1)).astype(int)
            for b in range(self.bands):
                weights[edges[b]:edges[b + 1], b] = 1.0
        else:
            low, high = self._range()
            centres = mel_to_hz(np.linspace(hz_to_mel(low), hz_to_mel(high), self.bands + 2))
            at = centres * self.frame_length / self.sample_rate  # in bins
            k = np.arange(half + 1, dtype=np.float64)
            for b in range(self.bands):
                rise = (k - at[b]) / max(at[b + 1] - at[b], 1e-12)
                fall = (at[b + 2] - k) / max(at[b + 2] - at[b + 1], 1e-12)
                weights[:, b] = np.clip(np.minimum(rise, fall), 0.0, 1.0)
                if not np.round(weights[:, b] * 32768).any():  # a filter narrower than a bin: its nearest bin
                    weights[min(int(round(at[b + 1])), half), b] = 1.0
        return np.round(weights * 32768).astype(np.int64)

    def constants(self, shape, scale):
        n = self.frame_length
        bits = n.bit_length() - 1
        weights = self.band_weights()
        first, count, offset, flat = [], [], [], []
        for b in range(self.bands):
            used = np.nonzero(weights[:, b])[0]
            lo, hi = int(used[0]), int(used[-1])
            first.append(lo)
            count.append(hi - lo + 1)
            offset.append(len(flat))
            flat.extend(int(w) for w in weights[lo:hi + 1, b])
        # Parseval: the frame's total power is at most n * n * 2**30 (twice that allows for
        # rounding); times a Q15 weight it must stay below 2**63.
        power_shift = max(0, 31 + 2 * bits + Q15 - 63)
        # log2(real energy / n**2) = log2(sum) + power_shift - 15 - 2 * bits + 2 * log2(scale)
        offset_q12 = (power_shift - Q15 - 2 * bits) * (1 << LOG_BITS) + round(2 * math.log2(scale) * (1 << LOG_BITS))
        t = np.arange(n, dtype=np.float64)
        dct = np.zeros((self.cepstra, self.bands))
        if self.cepstra:
            k = np.arange(self.cepstra)[:, None]
            b = np.arange(self.bands)[None, :]
            dct = np.cos(np.pi * k * (b + 0.5) / self.bands) * np.sqrt(2.0 / self.bands)
            dct[0] /= np.sqrt(2.0)  # orthonormal DCT-II
        return {
            "log2_length": bits,
            "frames": self.frames_of(shape[0]),
            "power_shift": power_shift,
            "energy_offset_q12": offset_q12,
            "window_q15": q15(0.5 - 0.5 * np.cos(2 * np.pi * t / n)),  # periodic Hann
            "cos_q15": q15(np.cos(2 * np.pi * np.arange(n // 2) / n)),
            "band_first": np.array(first, np.uint16),
            "band_count": np.array(count, np.uint16),
            "band_offset": np.array(offset, np.uint16),
            "band_weight": np.array(flat, np.uint16),
            "dct_q15": q15(dct).reshape(-1),
            "weights": weights,  # the dense form the reference multiplies with
        }

    def run(self, x, constants):
        n = self.frame_length
        frames = constants["frames"]
        starts = np.arange(frames) * self.hop
        framed = x[:, starts[:, None] + np.arange(n)[None, :], :]  # [N, frames, n, C]
        framed = np.moveaxis(framed, 3, 1)  # [N, C, frames, n]
        re = shift_round(framed * constants["window_q15"].astype(np.int64), Q15)
        re, im = fft_q15(re, np.zeros_like(re), constants["cos_q15"])
        half = n // 2 + 1
        power = (re[..., :half] * re[..., :half] + im[..., :half] * im[..., :half]) >> constants["power_shift"]
        energy = power @ constants["weights"]  # exact: every sum stays below 2**63
        logs = log2_q12(energy) + constants["energy_offset_q12"]  # [N, C, frames, bands]
        if self.relative:
            logs = logs - div_round(logs.sum(axis=-1, keepdims=True), self.bands)
        if self.cepstra:
            dct = constants["dct_q15"].astype(np.int64).reshape(self.cepstra, self.bands)
            logs = shift_round(logs @ dct.T, Q15)
        if self.pool:
            logs = div_round(logs.sum(axis=2, keepdims=True), frames)
        count, channels, rows = logs.shape[:3]
        return np.moveaxis(logs, 1, 2).reshape(count, rows, channels * self.features)


def spectrum_scratch_bytes(block: Spectrum) -> int:
    """Scratch td_fe_spectrum needs (td_frontend_scratch_bytes): the frame's real and imaginary
    parts, one frame's band values when they are changed before being written (relative,
    cepstra), and an int64 sum of each feature when the frames are pooled."""
    logs = block.bands if block.cepstra or block.relative else 0
    return 4 * (2 * block.frame_length + logs) + (8 * block.features if block.pool else 0)


def bit_reversed(n: int) -> np.ndarray:
    bits = n.bit_length() - 1
    return np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in range(n)], np.int64)


def fft_q15(re: np.ndarray, im: np.ndarray, cos_q15: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A radix-2 decimation-in-time FFT over the last axis in integers (td_fe_fft).

    Twiddles are Q15, sin(2 pi k / n) read from the cosine table at |k - n/4|; each product
    is rounded back with shift_round(., 15) and there is no scaling between stages, so
    int16 input grows to at most 2**15 * n (< 2**28 for n <= 4096).
    """
    n = re.shape[-1]
    order = bit_reversed(n)
    re, im = re[..., order], im[..., order]  # fresh contiguous copies: the stages work in place
    half = 1
    while half < n:
        k = np.arange(half) * (n // (2 * half))
        c = cos_q15[k].astype(np.int64)
        s = cos_q15[np.abs(k - n // 4)].astype(np.int64)
        pairs = (*re.shape[:-1], n // (2 * half), 2, half)  # [..., group, a or b, j]: views of re, im
        pr, pi = re.reshape(pairs), im.reshape(pairs)
        t_re = shift_round(pr[..., 1, :] * c + pi[..., 1, :] * s, Q15)
        t_im = shift_round(pi[..., 1, :] * c - pr[..., 1, :] * s, Q15)
        np.subtract(pr[..., 0, :], t_re, out=pr[..., 1, :])
        np.subtract(pi[..., 0, :], t_im, out=pi[..., 1, :])
        pr[..., 0, :] += t_re
        pi[..., 0, :] += t_im
        half *= 2
    return re, im


STATS = ("mean", "std", "min", "max", "rms", "mean_crossings", "zero_crossings")


@dataclass(frozen=True)
class Stats(Block):
    """Per-channel statistics over the window, or over equal segments of it.

    Output rows are segment-major ([segments * len(stats), channels]); the last
    steps % segments steps are dropped. mean, std (spread) and rms are in real input units
    (Q4 of an input step), min and max too (whole steps); the crossing rates are the
    fraction of neighbouring steps that cross the mean (or zero), in [0, 1] (Q15).

    Args:
        stats: which statistics, in order, from STATS.
        segments: equal segments the window is cut into (1..4096).
    """

    stats: tuple[str, ...] = ("mean", "std", "min", "max", "rms", "mean_crossings")
    segments: int = 1
    kind: ClassVar[str] = "stats"
    code: ClassVar[int] = 4
    c_kind: ClassVar[str] = "TD_FRONTEND_STATS"
    ends_chain: ClassVar[bool] = True

    def __post_init__(self):
        if isinstance(self.stats, (list, str)):
            object.__setattr__(self, "stats", tuple(self.stats) if isinstance(self.stats, list) else (self.stats,))
        super().__post_init__()

    def problems(self):
        found = []
        unknown = [s for s in self.stats if s not in STATS] if isinstance(self.stats, tuple) else [self.stats]
        if unknown or not self.stats:
            found.append(f"stats must be a non-empty list from {', '.join(STATS)}; "
                         f"unknown: {', '.join(map(repr, unknown)) or 'none given'}")
        elif len(set(self.stats)) != len(self.stats):
            found.append(f"stats lists one twice: {', '.join(self.stats)}")
        if not _is_int(self.segments) or not 1 <= self.segments <= 4096:
            found.append(f"segments must be an integer from 1 to 4096, not {self.segments!r}")
        return found

    def output_shape(self, shape):
        steps, channels = shape
        if steps < self.segments:
            raise BadInput(f"stats over {self.segments} segments need at least that many steps; the window has {steps}")
        return self.segments * len(self.stats), channels

    def row_scales(self, scale: float) -> np.ndarray:
        """The real scale of each row, repeating every segment: one per statistic."""
        per_stat = {"mean": scale / 16, "std": scale / 16, "rms": scale / 16, "min": scale, "max": scale,
                    "mean_crossings": 2.0 ** -Q15, "zero_crossings": 2.0 ** -Q15}
        return np.array([per_stat[s] for s in self.stats])

    def describe(self):
        over = "the window" if self.segments == 1 else f"{self.segments} segments"
        return f"stats over {over}: {', '.join(self.stats)}"

    def constants(self, shape, scale):
        return {"segment_length": shape[0] // self.segments,
                "stat_codes": np.array([STATS.index(s) for s in self.stats], np.uint8)}

    def run(self, x, constants):
        count, _, channels = x.shape
        n = constants["segment_length"]
        seg = x[:, :n * self.segments].reshape(count, self.segments, n, channels)
        mean4 = div_round(16 * seg.sum(axis=2), n)  # [N, S, C]
        d4 = 16 * seg - mean4[:, :, None, :]

        def crossing_rate(signs):
            changes = (signs[:, :, 1:, :] != signs[:, :, :-1, :]).sum(axis=2)
            return div_round(changes << Q15, n - 1) if n > 1 else np.zeros_like(mean4)

        compute = {
            "mean": lambda: mean4,
            "std": lambda: isqrt(div_round((d4 * d4).sum(axis=2), n)),
            "min": lambda: seg.min(axis=2),
            "max": lambda: seg.max(axis=2),
            "rms": lambda: isqrt(div_round(256 * (seg * seg).sum(axis=2), n)),
            "mean_crossings": lambda: crossing_rate(d4 >= 0),
            "zero_crossings": lambda: crossing_rate(seg >= 0),
        }
        rows = np.stack([compute[s]() for s in self.stats], axis=2)  # [N, S, stats, C]
        return rows.reshape(count, self.segments * len(self.stats), channels)


BLOCKS: dict[str, type[Block]] = {cls.kind: cls for cls in (Normalize, Decimate, Spectrum, Stats)}


def block_from_dict(data: dict) -> Block:
    """A block from its to_dict() form.

    Args:
        data: {"kind": one of BLOCKS, parameter: value, ...}.
    Returns:
        The block.
    """
    if not isinstance(data, dict) or data.get("kind") not in BLOCKS:
        kind = data.get("kind") if isinstance(data, dict) else data
        raise BadInput(f"unknown front-end block {kind!r}; accepted: {', '.join(BLOCKS)}")
    cls = BLOCKS[data["kind"]]
    params = {k: v for k, v in data.items() if k != "kind"}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise BadInput(f"{cls.kind} has no parameter {', '.join(unknown)}; accepted: {', '.join(sorted(known))}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})


# ---- the chain ----

@dataclass(frozen=True)
class Quantization:
    """The int8 features' real value: (q - zero_point) * scale (the network input's)."""
    scale: float
    zero_point: int

    def __post_init__(self):
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) \
                or not math.isfinite(self.scale) or self.scale <= 0:
            raise BadInput(f"output scale must be a positive number, not {self.scale!r}")
        if not _is_int(self.zero_point) or not -128 <= self.zero_point <= 127:
            raise BadInput(f"output zero_point must be an integer from -128 to 127, not {self.zero_point!r}")


@dataclass(frozen=True)
class Stage:
    """A block placed in a chain: its input shape and scale, and the constants they give."""
    block: Block
    in_shape: tuple[int, int]
    out_shape: tuple[int, int]
    scale: float  # real value of one input sample step
    constants: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """Everything static about a front end on one input shape: what the reference runs,
    what the C config holds and what the costs count."""
    input_shape: tuple[int, int]
    stages: tuple[Stage, ...]
    rows: int  # main feature rows and columns, before the extra rows
    cols: int
    extra_rows: int
    row_scales: np.ndarray  # real scale of main row r is row_scales[r % len(row_scales)]
    extra_scale: float
    output_shape: tuple[int, ...]
    time_scratch_bytes: int
    extras_scratch_bytes: int
    spectrum_scratch_bytes: int
    multipliers: np.ndarray | None = None  # [len(row_scales) + 1]: the main rows', then the extra rows'
    shifts: np.ndarray | None = None

    @property
    def scratch_bytes(self) -> int:
        """The C scratch buffer's size in bytes (td_frontend_scratch_bytes)."""
        return self.time_scratch_bytes + self.extras_scratch_bytes + self.spectrum_scratch_bytes

    @property
    def output_size(self) -> int:
        return int(np.prod(self.output_shape))

    def row_index(self) -> np.ndarray:
        """For each output element, its index into row_scales and multipliers (the last for extra rows)."""
        channels, period = self.input_shape[1], len(self.row_scales)
        main = np.repeat(np.arange(self.rows) % period, self.cols).reshape(self.rows, self.cols)
        if len(self.output_shape) == 1:
            return np.concatenate([main.reshape(-1), np.full(self.extra_rows * channels, period)])
        return np.concatenate([main, np.full((self.extra_rows, self.cols), period)], axis=0)


def _shape(input_shape) -> tuple[int, int]:
    shape = tuple(input_shape)
    if len(shape) != 2 or not all(_is_int(v) for v in shape):
        raise BadInput(f"a window's shape is [steps, channels], not {list(shape)}")
    steps, channels = (int(v) for v in shape)
    if not 1 <= steps <= MAX_STEPS or not 1 <= channels <= MAX_CHANNELS:
        raise BadInput(f"a window has 1 to {MAX_STEPS} steps and 1 to {MAX_CHANNELS} channels, not {steps} x {channels}")
    return steps, channels


@dataclass(frozen=True)
class Frontend:
    """A chain of blocks from a float window [steps, channels] to features.

    Args:
        blocks: time-domain blocks (Normalize, Decimate) then at most one feature block
            (Spectrum, Stats); none at all passes the quantised window through.
        input_scale: real value of one int16 input step (input_scale_for() fits it to data);
            values beyond +-32767 steps clip.
        flatten: 1-D features instead of 2-D.
        output: the int8 features' quantisation (the network input's); with_output() or
            calibrated() set it. Float and int32 features need none.
    """

    blocks: tuple[Block, ...] = ()
    input_scale: float = 1.0
    flatten: bool = False
    output: Quantization | None = None
    _plans: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(self.blocks))
        problems = [f"block {i} is {b!r}, not a front-end block" for i, b in enumerate(self.blocks)
                    if not isinstance(b, Block)]
        scale = self.input_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            problems.append(f"input_scale must be a positive number, not {scale!r}")
        early = [b.kind for b in self.blocks[:-1] if isinstance(b, Block) and b.ends_chain]
        if early:
            problems.append(f"{', '.join(early)} must be the last block: feature blocks end a chain")
        if not isinstance(self.flatten, bool):
            problems.append(f"flatten must be true or false, not {self.flatten!r}")
        if self.output is not None and not isinstance(self.output, Quantization):
            problems.append(f"output must be a Quantization, not {self.output!r}")
        if problems:
            raise BadInput("front end: " + "; ".join(problems))

    # -- static --

    def output_shape(self, input_shape) -> tuple[int, ...]:
        """The features' shape for a window shape, without running anything.

        Args:
            input_shape: (steps, channels).
        Returns:
            (rows, cols) or, flattened, (size,); extra rows (Normalize's log-scale) come last.
        """
        shape = _shape(input_shape)
        channels = shape[1]
        for block in self.blocks:
            shape = block.output_shape(shape)
        extra = sum(b.extra_rows() for b in self.blocks)
        if self.flatten:
            return (shape[0] * shape[1] + extra * channels,)
        return (shape[0] + extra, shape[1])

    def plan(self, input_shape) -> Plan:
        """The chain placed on an input shape: each stage's constants, the row scales, the
        scratch the C needs and, when output is set, each row's multiplier.

        Args:
            input_shape: (steps, channels).
        Returns:
            The Plan (cached per shape).
        """
        shape = _shape(input_shape)
        if shape in self._plans:
            return self._plans[shape]
        output_shape = self.output_shape(shape)
        steps, channels = shape
        scale = float(self.input_scale)
        stages, current = [], shape
        for block in self.blocks:
            out = block.output_shape(current)
            stages.append(Stage(block, current, out, scale, block.constants(current, scale)))
            if not block.ends_chain:
                scale = block.out_scale(scale)
            current = out
        rows, cols = current
        last = self.blocks[-1] if self.blocks else None
        row_scales = last.row_scales(scale) if last is not None and last.ends_chain else np.array([scale])
        extra_rows = sum(b.extra_rows() for b in self.blocks)
        # The time-domain blocks work in place on one int16 buffer: a copy of the window, or,
        # when the chain starts by decimating, the decimated window (read from the input).
        has_time = any(not b.ends_chain for b in self.blocks)
        buffered = stages[0].out_shape[0] if self.blocks and isinstance(self.blocks[0], Decimate) else steps
        spectrum = 0
        if isinstance(last, Spectrum):
            spectrum = spectrum_scratch_bytes(last)
        multipliers = shifts = None
        if self.output is not None:
            pairs = [quantize_multiplier(s / self.output.scale) for s in [*row_scales, 2.0 ** -LOG_BITS]]
            multipliers = np.array([m for m, _ in pairs], np.int64)
            shifts = np.array([s for _, s in pairs], np.int64)
        plan = Plan(input_shape=shape, stages=tuple(stages), rows=rows, cols=cols, extra_rows=extra_rows,
                    row_scales=row_scales, extra_scale=2.0 ** -LOG_BITS, output_shape=output_shape,
                    time_scratch_bytes=(2 * buffered * channels + 3) // 4 * 4 if has_time else 0,
                    extras_scratch_bytes=4 * extra_rows * channels, spectrum_scratch_bytes=spectrum,
                    multipliers=multipliers, shifts=shifts)
        self._plans[shape] = plan
        return plan

    def describe(self) -> str:
        """One line: the blocks in order, the input scale and the output quantisation."""
        chain = " -> ".join(b.describe() for b in self.blocks) or "no blocks (the quantised window)"
        out = (f"; int8 output scale {self.output.scale:.6g}, zero point {self.output.zero_point}"
               if self.output else "")
        return f"quantise at {self.input_scale:.6g} per step -> {chain}{' -> flatten' if self.flatten else ''}{out}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, for the training report; from_dict() rebuilds the same front end."""
        return {"format": FORMAT, "input_scale": float(self.input_scale), "flatten": self.flatten,
                "output": None if self.output is None else {"scale": float(self.output.scale),
                                                            "zero_point": int(self.output.zero_point)},
                "blocks": [b.to_dict() for b in self.blocks]}

    @classmethod
    def from_dict(cls, data: dict) -> Frontend:
        """The front end to_dict() described.

        Args:
            data: to_dict()'s output (as read back from JSON).
        Returns:
            The Frontend.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else data
            raise BadInput(f"front-end format {found!r} is not readable here; accepted: {FORMAT}")
        output = data.get("output")
        return cls(blocks=tuple(block_from_dict(b) for b in data.get("blocks", [])),
                   input_scale=data.get("input_scale", 1.0), flatten=data.get("flatten", False),
                   output=None if output is None else Quantization(output["scale"], output["zero_point"]))

    def with_output(self, scale: float, zero_point: int) -> Frontend:
        """The same chain, giving int8 features with this (scale, zero point)."""
        return replace(self, output=Quantization(scale, zero_point))

    # -- the reference --

    def _batch(self, windows) -> tuple[np.ndarray, bool]:
        x = np.asarray(windows)
        if x.ndim not in (2, 3):
            raise BadInput(f"windows are [steps, channels] or [count, steps, channels], not shape {list(x.shape)}")
        return (x[None] if x.ndim == 2 else x), x.ndim == 2

    def features_q(self, windows) -> np.ndarray:
        """The int32 fixed-point features (td_frontend_features).

        Args:
            windows: float [steps, channels] or [count, steps, channels].
        Returns:
            int32 features of output_shape (with a leading count axis for a batch);
            real value = q * the row's scale (see features()).
        """
        x, single = self._batch(windows)
        plan = self.plan(x.shape[1:])
        # in chunks of about 4 MB of samples: a spectrum's frames of a thousand long windows would
        # take gigabytes, and smaller arrays stay in cache
        per_window = x.shape[1] * x.shape[2] * max([1] + [st.block.frame_length // st.block.hop
                                                          for st in plan.stages if isinstance(st.block, Spectrum)])
        chunk = max(1, (1 << 19) // per_window)
        out = np.concatenate([self._run(x[i:i + chunk], plan) for i in range(0, len(x), chunk)]) \
            if len(x) else np.zeros((0, *plan.output_shape), np.int32)
        return out[0] if single else out

    def _run(self, windows: np.ndarray, plan: Plan) -> np.ndarray:
        x = quantize_input(windows, self.input_scale).astype(np.int64)
        extras, main = [], None
        for stage in plan.stages:
            if stage.block.ends_chain:
                main = stage.block.run(x, stage.constants)
            else:
                x, extra = stage.block.run(x, stage.constants)
                if extra is not None:
                    extras.append(extra)
        if main is None:
            main = x
        count, channels = len(x), plan.input_shape[1]
        extra = np.stack(extras, axis=1) if extras else np.zeros((count, 0, channels), np.int64)
        if self.flatten:
            laid = np.concatenate([main.reshape(count, -1), extra.reshape(count, -1)], axis=1)
        else:
            padded = np.zeros((count, plan.extra_rows, plan.cols), np.int64)
            padded[:, :, :channels] = extra
            laid = np.concatenate([main, padded], axis=1)
        assert laid.shape[1:] == plan.output_shape and np.abs(laid).max(initial=0) < 2 ** 31
        return laid.astype(np.int32)

    def scales(self, input_shape) -> np.ndarray:
        """The real scale of each output element, shaped like the features."""
        plan = self.plan(input_shape)
        return np.concatenate([plan.row_scales, [plan.extra_scale]])[plan.row_index()]

    def features(self, windows) -> np.ndarray:
        """Float features (what a network trains on): int32 features times their scales.

        Args:
            windows: float [steps, channels] or [count, steps, channels].
        Returns:
            float32 features of output_shape (with a leading count axis for a batch).
        """
        x, single = self._batch(windows)
        q = self.features_q(x)
        out = (q * self.scales(x.shape[1:])).astype(np.float32)
        return out[0] if single else out

    def quantized(self, windows) -> np.ndarray:
        """int8 features with the output quantisation (td_frontend_run).

        Args:
            windows: float [steps, channels] or [count, steps, channels].
        Returns:
            int8 features of output_shape (with a leading count axis for a batch).
        """
        if self.output is None:
            raise BadInput("int8 features need the output quantisation: call with_output(scale, zero_point) "
                           "or calibrated(windows) first")
        x, single = self._batch(windows)
        plan = self.plan(x.shape[1:])
        index = plan.row_index()
        out = requantize(self.features_q(x), plan.multipliers[index], plan.shifts[index], self.output.zero_point)
        return out[0] if single else out

    def calibrated(self, windows) -> Frontend:
        """The same chain with an int8 output quantisation that spans these windows' features
        (and 0), as TFLite's converter chooses an input's from representative data.

        Args:
            windows: float [count, steps, channels].
        Returns:
            A new Frontend with output set.
        """
        values = self.features(windows)
        low, high = min(0.0, float(values.min(initial=0.0))), max(0.0, float(values.max(initial=0.0)))
        if high - low <= 0:
            high = low + 1.0
        scale = (high - low) / 255.0
        return self.with_output(scale, int(np.clip(round(-128 - low / scale), -128, 127)))


def model_frontend(meta: dict) -> tuple[Frontend, tuple[int, int]] | None:
    """The front end and raw window shape [steps, channels] stored in a model's metadata
    (core.model.Model.meta), or None when the model takes its input as it is.

    Raises:
        BadInput: the metadata has a front end but no window, or a front end that
            Frontend.from_dict() refuses.
    """
    if not meta.get("frontend"):
        return None
    window = meta.get("window")
    if not window:
        raise BadInput("model metadata: a front end needs the raw window's [steps, channels] under 'window'")
    return Frontend.from_dict(meta["frontend"]), (int(window[0]), int(window[1]))
