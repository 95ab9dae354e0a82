"""tinydeploy's metadata inside the .tflite: labels, front end and window travel with the model."""

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema_fb

from tests import models
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import check_meta, parse_model, with_metadata
from tinydeploy.runtime.evaluate import reference_outputs


@pytest.mark.host
def test_metadata_round_trip_keeps_the_model_bit_exact_on_tflm():
    plain = models.int8_cnn()
    meta = {"labels": [f"class {i}" for i in range(10)], "window": [32, 32]}
    tagged = with_metadata(plain, meta)
    before, after = parse_model(plain), parse_model(tagged)
    assert before.meta == {} and after.meta == meta and after.labels == tuple(meta["labels"])
    assert [t.raw for t in before.tensors] == [t.raw for t in after.tensors]
    x = np.random.default_rng(1).integers(-128, 128, size=(8, *models.INPUT_SHAPE), dtype=np.int8)
    assert np.array_equal(reference_outputs(before, x), reference_outputs(after, x))
    # every constant buffer keeps TFLite's 16-byte alignment, so int32 biases load in place
    root = schema_fb.Model.GetRootAs(tagged, 0)
    for i in range(root.BuffersLength()):
        buffer = root.Buffers(i)
        if buffer.DataLength():
            start = buffer._tab.Vector(buffer._tab.Offset(4))  # Buffer.data is field 0
            assert start % 16 == 0, f"buffer {i} at {start}"
    # setting it again replaces the entry instead of stacking a second one
    again = with_metadata(tagged, {"labels": ["a"] * 10})
    assert parse_model(again).labels == ("a",) * 10 and len(again) <= len(tagged) + 16


@pytest.mark.unit
@pytest.mark.parametrize("meta, named", [
    ([1], "JSON object"), ({"labels": "abc"}, "labels"), ({"labels": [1, 2]}, "labels"),
    ({"window": [0, 3]}, "window"), ({"window": [5]}, "window"), ({"frontend": []}, "frontend"),
])
def test_bad_metadata_is_named(meta, named):
    with pytest.raises(BadInput, match=named):
        check_meta(meta, "m")
