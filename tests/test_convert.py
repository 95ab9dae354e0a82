"""Conversion to int8 TFLite with a static batch of 1, as the board runs the model."""

import numpy as np
import pytest

from tinydeploy.codegen import cengine
from tinydeploy.optimize.architectures import Arch, Block, plain_model, with_softmax
from tinydeploy.optimize.convert import to_int8_tflite
from tinydeploy.core.model import parse_model

pytestmark = pytest.mark.host

SHAPE_ARITHMETIC = {"SHAPE", "STRIDED_SLICE", "PACK"}


@pytest.mark.parametrize("input_shape", [(32, 32, 1), (100, 6), (150, 1)])
def test_no_run_time_shape_arithmetic_in_images_or_series(input_shape):
    """A series model views its (T, C) window as a (T, 1, C) image; with the batch fixed at 1
    that reshape is static, so no SHAPE/STRIDED_SLICE/PACK is left, and the C engine takes it."""
    arch = Arch((Block("conv", 8, 5, 2), Block("separable", 16, 3, 1, pool=True), Block("depthwise", 16, 3)),
                head_units=8)
    model = with_softmax(plain_model(arch, input_shape, 4))
    data = np.random.default_rng(0).normal(size=(16, *input_shape)).astype(np.float32)
    converted = parse_model(to_int8_tflite(model, data))
    ops = {op.name for op in converted.operators}
    assert not ops & SHAPE_ARITHMETIC, ops
    assert converted.is_int8 and converted.input_tensors[0].shape == (1, *input_shape)
    assert cengine.lower(converted).arena_bytes > 0
