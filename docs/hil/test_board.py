"""An example hardware-in-the-loop suite (docs/hil-ci.md): run it with boards attached,

    pytest docs/hil/test_board.py -n 2 --tinydeploy-farm farm.toml --tinydeploy-model model.tflite

Each pytest-xdist worker gets its own board, and the plugin checks that the board runs
model.tflite before any test uses it.
"""

import numpy as np


def test_the_board_set_up_its_model_within_its_arena(tinydeploy_device):
    info = tinydeploy_device.info()
    assert info["setup_error"] is None
    assert 0 < info["arena_used_bytes"] <= info["arena_bytes"]


def test_latency_is_measured_on_the_board(tinydeploy_device):
    latency = tinydeploy_device.bench(runs=10)
    assert 0 < latency.min_us <= latency.median_us <= latency.max_us


def test_the_boards_outputs_match_the_host_reference(tinydeploy_device):
    shape = tinydeploy_device.info()["input"]["shape"][1:]
    x = np.random.default_rng(0).random((20, *shape), dtype=np.float32)
    report = tinydeploy_device.validate(x, np.zeros(20, dtype=int))
    assert report["samples"] == 20 and report["top1_agreement"] == 1.0
