"""Model architectures as small JSON-serialisable specs, and their Keras models.

Every model built here is quantizable by tensorflow-model-optimization: a
separable block is DepthwiseConv2D -> BN -> act -> Conv2D 1x1 -> BN -> act
(tfmot rejects BN after SeparableConv2D). Time series (T, C) run as 2-D
convolutions over a (T, 1, C) view, the form TFLM executes.

Models output logits. ``fuse`` folds the input normalization and every
BatchNormalization into the conv/dense weights, giving a plain model that takes
raw input values; ``with_softmax`` makes it output probabilities for deployment.

An architecture with ``prototypes`` is a nearest-prototype classifier instead of a CNN: one
dense layer scores the input against stored windows of each class (the score grows as the
Euclidean distance shrinks) and a max pool keeps each class's best, so it is a 1-nearest-
neighbour classifier in the normalized input space (tinydeploy.optimize.nearest).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from tinydeploy.runtime import _tf
from tinydeploy.core.errors import BadInput

BLOCK_KINDS = ("conv", "separable", "depthwise")
ACTIVATIONS = ("relu", "relu6")
STRIDES = (1, 2, 4, 8)  # 4 and 8: a long window's stem, or target seeking's on the first block
KERNELS = (1, 3, 5, 7, 9, 11)  # 9 and 11: a long window's strided stem, so that no sample is skipped
DILATIONS = (1, 2, 4, 8, 16)  # along time (both axes of an image); a dilated block has stride 1


@dataclass(frozen=True)
class Block:
    kind: str = "separable"
    filters: int = 16  # output channels (a depthwise block keeps its input channels)
    kernel: int = 3
    stride: int = 1
    activation: str = "relu"
    pool: bool = False  # 2x2 max pool after the block
    residual: bool = False  # add the block's input when the shapes allow
    dilation: int = 1  # the kernel's taps this many steps apart (stride 1 then): a wide view for few MACs


@dataclass(frozen=True)
class Arch:
    blocks: tuple[Block, ...]
    head_units: int = 0  # a hidden dense layer before the classifier; 0 for none
    name: str = "custom"
    prototypes: int = 0  # > 0: a nearest-prototype classifier with this many per class, and no blocks

    def to_dict(self) -> dict:
        return {"name": self.name, "head_units": self.head_units, "blocks": [_block_dict(b) for b in self.blocks],
                **({"prototypes": self.prototypes} if self.prototypes else {})}

    @classmethod
    def from_dict(cls, raw: dict, origin: str = "architecture") -> "Arch":
        if not isinstance(raw, dict) or not isinstance(raw.get("blocks"), list) \
                or not all(isinstance(b, dict) for b in raw["blocks"]):
            raise BadInput(f"{origin}: not an architecture spec (an object with a \"blocks\" list of objects)")
        try:
            blocks = tuple(Block(**b) for b in raw["blocks"])
            arch = cls(blocks, int(raw.get("head_units", 0)), str(raw.get("name", "custom")),
                       int(raw.get("prototypes", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInput(f"{origin}: not an architecture spec ({exc})") from exc
        arch.validate(origin)
        return arch

    def validate(self, origin: str = "architecture") -> None:
        problems = []
        if self.prototypes:
            if not 1 <= self.prototypes <= 4096 or self.blocks or self.head_units:
                problems.append(f"prototypes {self.prototypes} with {len(self.blocks)} blocks and head_units "
                                f"{self.head_units} (a nearest-prototype classifier has 1..4096 prototypes a "
                                "class, no blocks and no head)")
        elif not 1 <= len(self.blocks) <= 8:
            problems.append(f"{len(self.blocks)} blocks (1..8 allowed)")
        types = {"kind": str, "filters": int, "kernel": int, "stride": int, "activation": str, "pool": bool,
                 "residual": bool, "dilation": int}
        for i, b in enumerate(self.blocks):
            wrong = [f"{name} {getattr(b, name)!r}" for name, kind in types.items()
                     if not isinstance(getattr(b, name), kind) or (kind is int and isinstance(getattr(b, name), bool))]
            if wrong:
                problems.append(f"block {i}: {', '.join(wrong)} (wrong type)")
                continue
            if b.kind not in BLOCK_KINDS:
                problems.append(f"block {i}: kind '{b.kind}' (accepted: {', '.join(BLOCK_KINDS)})")
            if b.activation not in ACTIVATIONS:
                problems.append(f"block {i}: activation '{b.activation}' (accepted: {', '.join(ACTIVATIONS)})")
            if b.kernel not in KERNELS or b.stride not in STRIDES or not 1 <= b.filters <= 1024:
                problems.append(f"block {i}: kernel {b.kernel}, stride {b.stride}, filters {b.filters} (accepted: "
                                f"kernel {', '.join(map(str, KERNELS))}; stride {', '.join(map(str, STRIDES))}; "
                                "filters 1..1024)")
            if b.dilation not in DILATIONS or (b.dilation > 1 and b.stride > 1):
                problems.append(f"block {i}: dilation {b.dilation} with stride {b.stride} (accepted: dilation "
                                f"{', '.join(map(str, DILATIONS))}, and stride 1 when dilated)")
        if not 0 <= self.head_units <= 4096:
            problems.append(f"head_units {self.head_units} (0..4096)")
        if problems:
            raise BadInput(f"{origin}: " + "; ".join(problems))

    def scaled(self, width: float) -> "Arch":
        """The same architecture with every block's filters multiplied by width (for a
        nearest-prototype classifier: its prototypes)."""
        if self.prototypes:
            return replace(self, prototypes=max(1, int(round(self.prototypes * width))),
                           name=f"{self.name}x{width:g}")
        return replace(self, blocks=tuple(replace(b, filters=max(4, int(round(b.filters * width))))
                                          for b in self.blocks),
                       head_units=int(round(self.head_units * width)), name=f"{self.name}x{width:g}")

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "Arch":
        from tinydeploy.core.outputs import read_json
        p = Path(path)
        raw = read_json(p, "no such architecture file")
        if not isinstance(raw, dict):
            raise BadInput(f"{p}: not an architecture spec (a JSON object with \"blocks\"), but a "
                           f"{type(raw).__name__}")
        return cls.from_dict(raw.get("arch", raw), str(p))


def _block_dict(b: Block) -> dict:
    """A block's spec; dilation only when the block is dilated, so that specs written before
    blocks could be dilated (and run fingerprints made of them) stay as they were."""
    raw = asdict(b)
    if b.dilation == 1:
        del raw["dilation"]
    return raw


def default_arch(input_shape: tuple[int, ...] | None = None) -> Arch:
    """The starting architecture for an input: for images, a compact CNN in the spirit of the
    reference gesture model (conv stem -> separable blocks -> global pooling -> dense); for
    (T, C) series, one sized from the window length (series_arch)."""
    if input_shape is not None and not _spatial(input_shape):
        return series_arch(input_shape[0])
    return Arch(name="default", blocks=(
        Block("conv", 8, 3, 2),
        Block("separable", 16, 3, 1, pool=True),
        Block("separable", 32, 3, 1, pool=True),
        Block("separable", 32, 3, 1, residual=True),
    ))


def series_arch(steps: int) -> Arch:
    """A 1-D CNN whose receptive field covers a window of this many steps.

    Short windows (up to 16 steps) keep their full resolution. Longer ones get a stride-2
    stem and then one pooled separable block each time the sequence is still longer than 8,
    so the last block sees nearly the whole window (receptive field about 2 * steps for
    150 steps) before global pooling; the widths grow towards the classifier so that there
    is capacity before the pooling averages time away.
    """
    if steps <= 16:
        return Arch(name="series-short", blocks=(
            Block("conv", 16, 3, 1), Block("separable", 32, 3, 1), Block("separable", 32, 3, 1, residual=True)))
    blocks = [Block("conv", 8, 5, 2)]
    length, width = (steps - 5) // 2 + 1, 16
    while length > 8 and len(blocks) < 5:
        blocks.append(Block("separable", width, 5, 1, pool=True))
        length //= 2
        width = min(32, width + 8)
    blocks.append(Block("separable", width, 3, 1))
    return Arch(name="series", blocks=tuple(blocks))


# Windows at least this long get the strided and dilated family (long_series_arch): the
# 150-step family above cost 10 ms on the S3 for 1,460 steps, and shrunk to 1 ms it was useless.
LONG_WINDOW = 512


def head_width(n_classes: int) -> int:
    """The features the classifier reads (the last block's filters): at least the class count,
    rounded up to 8, from 16 to 96, so that 52 classes are not squeezed through 32 features."""
    return int(min(96, max(16, -(-n_classes // 8) * 8)))


def long_series_arch(steps: int, n_classes: int, width: float = 1.0) -> Arch:
    """A 1-D CNN for long windows (LONG_WINDOW steps or more) that fits a millisecond budget.

    A strided stem (kernel 7, stride 4; kernel 11, stride 8 beyond 2,048 steps: the kernel spans
    the stride, so no sample is skipped) and a max pool take the window down 8 or 16 times, then
    separable blocks of stride 2 halve it while it is longer than 16; after the second and
    third of them, a dilated block (dilation 2, then 4, residual) widens the view at that
    resolution for a fraction of a strided block's cost. The last block has head_width(n_classes)
    filters, then global average pooling and the classifier. width scales every other block's
    filters (the sizing in tinydeploy.optimize.stages bisects it to meet the targets).
    """
    def filters(base: float) -> int:
        return max(4, int(round(base * width)))

    stride, kernel = (4, 7) if steps <= 2048 else (8, 11)
    blocks = [Block("conv", filters(8), kernel, stride, pool=True)]
    length = ((steps - kernel) // stride + 1) // 2
    base, strided = 12.0, 0
    while length > 16 and len(blocks) < 6:
        blocks.append(Block("separable", filters(base), 5, 2))
        length, strided = (length + 1) // 2, strided + 1
        if strided in (2, 3) and len(blocks) < 6:
            blocks.append(Block("separable", filters(base), 5, 1, residual=True, dilation=2 ** (strided - 1)))
        base *= 1.4
    blocks.append(Block("separable", max(filters(base), head_width(n_classes)), 3, 1))
    return Arch(tuple(blocks), name="long-series")


def image_arch(n_classes: int, width: float = 1.0) -> Arch:
    """default_arch's image CNN with its widths scaled by width, and its last block at least
    head_width(n_classes) wide."""
    def filters(base: int) -> int:
        return max(4, int(round(base * width)))

    return Arch(name="image", blocks=(
        Block("conv", filters(8), 3, 2),
        Block("separable", filters(16), 3, 1, pool=True),
        Block("separable", filters(32), 3, 1, pool=True),
        Block("separable", max(filters(32), head_width(n_classes)), 3, 1, residual=True),
    ))


def family(input_shape: tuple[int, ...], n_classes: int) -> Callable[[float], Arch]:
    """The architecture family for data of this shape and class count: width -> architecture
    (width 1 is the family's base). Images: image_arch; long windows: long_series_arch; shorter
    windows: series_arch, its filters scaled (and its last block at least head_width wide)."""
    if _spatial(input_shape):
        return lambda width: image_arch(n_classes, width)
    steps = input_shape[0]
    if steps >= LONG_WINDOW:
        return lambda width: long_series_arch(steps, n_classes, width)

    def short(width: float) -> Arch:
        base = series_arch(steps)
        scaled = base.scaled(width) if width != 1.0 else base
        last = scaled.blocks[-1]
        return replace(scaled, name=base.name,
                       blocks=(*scaled.blocks[:-1], replace(last, filters=max(last.filters, head_width(n_classes)))))
    return short


def widest(fits: Callable[[float], bool], low: float, high: float, steps: int = 5, high_fits: bool | None = None) -> float:
    """The largest width in [low, high] for which fits holds, by bisection on a log scale
    (fits(low) is assumed; high is tried first unless high_fits already says)."""
    if fits(high) if high_fits is None else high_fits:
        return high
    for _ in range(steps):
        middle = float(np.sqrt(low * high))
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


@dataclass
class Normalization:
    """Per-channel mean and std of the raw training inputs."""
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, x: np.ndarray) -> "Normalization":
        axes = tuple(range(x.ndim - 1))
        std = x.std(axis=axes)
        # A channel that (nearly) never changes carries nothing: leave it unscaled. Dividing by a tiny
        # std would fold a huge weight into the first layer and crush every other weight's
        # int8 resolution (per-channel scales span the whole filter).
        std = np.where(std > 1e-3 * max(float(std.max()), 1e-12), std, 1.0)
        return cls([float(v) for v in x.mean(axis=axes)], [float(v) for v in std])


def _spatial(input_shape) -> bool:
    return len(input_shape) == 3


def build(arch: Arch, input_shape: tuple[int, ...], n_classes: int, norm: Normalization | None = None,
          batchnorm: bool = True, name: str = "model"):
    """The Keras (tf_keras) model of an architecture. It outputs logits.

    Args:
        arch: the spec.
        input_shape: (H, W, C) images or (T, C) windows.
        n_classes: classifier outputs.
        norm: when given, a Rescaling layer normalizes raw inputs first.
        batchnorm: False builds the plain (BN-free) form that ``deployable`` fills.
        name: the model's name.
    """
    keras = _tf.keras()
    L = keras.layers
    image = _spatial(input_shape)
    k2 = (lambda k: (k, k)) if image else (lambda k: (k, 1))
    inputs = L.Input(input_shape, name="input")
    x = inputs if image else L.Reshape((input_shape[0], 1, input_shape[1]), name="as_2d")(inputs)
    if norm is not None:
        x = L.Rescaling([1 / s for s in norm.std], [-m / s for m, s in zip(norm.mean, norm.std)],
                        name="normalize")(x)

    def finish(t, kind, tag):
        """BN and ReLU after a conv when training with BatchNormalization. The plain
        (BN-free) form must not follow a conv with a ReLU *layer*: tfmot then gives the
        conv a no-op config and its weights are not fake-quantized in QAT. So ReLU is
        fused into the conv, and ReLU6 (which tfmot cannot quantize fused) is an
        Activation layer, a pattern tfmot leaves alone."""
        if not batchnorm:
            return L.Activation("relu6", name=f"{tag}_act")(t) if kind == "relu6" else t
        # momentum 0.9: moving statistics settle within the few hundred steps of a small dataset
        t = L.BatchNormalization(momentum=0.9, name=f"{tag}_bn")(t)
        return L.ReLU(6.0 if kind == "relu6" else None, name=f"{tag}_act")(t)

    if arch.prototypes:
        return keras.Model(inputs, _nearest(L, x, arch.prototypes, n_classes), name=name)
    for i, b in enumerate(arch.blocks):
        # The first layer pads VALID so that folding the input normalization into its
        # weights is exact (zero padding would be normalized differently); on inputs smaller
        # than its kernel (a 2x2 image, a 1-step window) the kernel shrinks to the input.
        pad = "valid" if i == 0 else "same"
        kernel = k2(b.kernel)
        if i == 0:
            kernel = tuple(min(k, int(d)) for k, d in zip(kernel, x.shape[1:3]))
        block_in = x
        tag = f"b{i}"
        fused = "relu" if not batchnorm and b.activation == "relu" else None
        if b.kind == "conv":
            x = L.Conv2D(b.filters, kernel, k2(b.stride), pad, use_bias=not batchnorm or i == 0,
                         dilation_rate=k2(b.dilation), activation=fused, name=f"{tag}_conv")(x)
            x = finish(x, b.activation, f"{tag}_conv")
        else:
            # A series' width is 1, so a (s, s) stride is the (s, 1) one; TensorFlow's CPU kernel
            # trains depthwise convolutions with equal strides only.
            x = L.DepthwiseConv2D(kernel, (b.stride, b.stride), pad, use_bias=not batchnorm or i == 0,
                                  dilation_rate=k2(b.dilation), activation=fused, name=f"{tag}_dw")(x)
            x = finish(x, b.activation, f"{tag}_dw")
            if b.kind == "separable":
                x = L.Conv2D(b.filters, 1, use_bias=not batchnorm, activation=fused, name=f"{tag}_pw")(x)
                x = finish(x, b.activation, f"{tag}_pw")
        if b.residual and tuple(x.shape[1:]) == tuple(block_in.shape[1:]) and i > 0:
            x = L.Add(name=f"{tag}_add")([x, block_in])
        pooled_dims = x.shape[1:3] if image else x.shape[1:2]  # a series' width is always 1
        if b.pool and min(pooled_dims) >= 2:
            x = L.MaxPooling2D(k2(2), name=f"{tag}_pool")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    if arch.head_units:
        x = L.Dense(arch.head_units, activation="relu", name="head")(x)
    outputs = L.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _nearest(L, x, per_class: int, n_classes: int):
    """Scores against per_class x n_classes prototypes (unit i * n_classes + c is class c's
    i-th), then each class's largest. The max is a max pool over a (per_class, 1) window, an
    operator both engines have."""
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(per_class * n_classes, name="prototypes")(x)
    x = L.Reshape((per_class, 1, n_classes), name="by_class")(x)
    x = L.MaxPooling2D((per_class, 1), name="nearest")(x)
    return L.Flatten(name="scores")(x)


def _fold_bn(kernel, bias, bn_layer, depthwise: bool):
    gamma, beta, mean, var = bn_layer.get_weights()
    factor = gamma / np.sqrt(var + bn_layer.epsilon)
    if depthwise:  # (kh, kw, C, 1): output channel on axis 2
        kernel = kernel * factor[None, None, :, None]
    else:
        kernel = kernel * factor
    return kernel, (bias - mean) * factor + beta


def fuse(trained, arch: Arch, input_shape, n_classes: int, norm: Normalization | None):
    """A plain (BN-free) logits model that takes raw inputs.

    The Rescaling normalization is folded into the first layer (VALID padding
    makes that exact) and every BatchNormalization into the layer before it.
    """
    keras = _tf.keras()
    plain = plain_model(arch, input_shape, n_classes)
    trained_names = {layer.name for layer in trained.layers}
    first = True
    for layer in plain.layers:
        weights = layer.get_weights()
        if not weights or layer.name not in trained_names:
            continue
        source = trained.get_layer(layer.name)
        w = source.get_weights()
        kernel, bias = w[0], (w[1] if len(w) > 1 else np.zeros(weights[1].shape, np.float32))
        depthwise = isinstance(source, keras.layers.DepthwiseConv2D)
        if f"{layer.name}_bn" in trained_names:
            kernel, bias = _fold_bn(kernel, bias, trained.get_layer(f"{layer.name}_bn"), depthwise)
        if first and norm is not None:
            mean, std = np.array(norm.mean, np.float32), np.array(norm.std, np.float32)
            if kernel.ndim == 2:  # a dense layer on the flattened input, channel last
                repeat = kernel.shape[0] // len(std)
                bias = bias - np.tile(mean / std, repeat) @ kernel
                kernel = kernel / np.tile(std, repeat)[:, None]
            elif depthwise:  # (kh, kw, C, 1)
                bias = bias - (kernel[..., 0] * (mean / std)).sum(axis=(0, 1))
                kernel = kernel / std[None, None, :, None]
            else:  # (kh, kw, Cin, Cout)
                bias = bias - np.einsum("hwio,i->o", kernel, mean / std)
                kernel = kernel / std[None, None, :, None]
        first = False
        layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return plain


def with_softmax(plain):
    """The deployable form of a plain logits model: it outputs class probabilities."""
    keras = _tf.keras()
    probabilities = keras.layers.Softmax(name="probabilities")(plain.output)
    return keras.Model(plain.input, probabilities, name="deploy")


def plain_model(arch: Arch, input_shape, n_classes: int):
    """An empty plain (BN-free, raw-input) logits model of an architecture."""
    return build(arch, input_shape, n_classes, None, batchnorm=False, name="deploy")


def untrained_model(arch: Arch, data):
    """The int8 model of an architecture with stand-in weights (_live_weights): its sizes, operators and
    MACs are those of the trained model (the weights' values don't change them). data: a Dataset."""
    from tinydeploy.optimize.convert import to_int8_tflite
    from tinydeploy.core.model import parse_model
    plain = plain_model(arch, data.input_shape, len(data.labels))
    _live_weights(plain)
    return parse_model(to_int8_tflite(with_softmax(plain), data.x_train[:16], samples=16))


def _live_weights(plain) -> None:
    """Deterministic positive weights: every activation stays alive on the calibration
    samples (a dead ReLU would give a zero quantization range that TFLM refuses), and
    sizes do not depend on the values."""
    for layer in plain.layers:
        weights = layer.get_weights()
        if len(weights) == 2:
            kernel, bias = weights
            fan_in = max(1, kernel.size // kernel.shape[-1])
            layer.set_weights([np.full_like(kernel, 1.0 / fan_in), np.full_like(bias, 0.1)])
