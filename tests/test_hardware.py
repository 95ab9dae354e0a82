"""On a real board (`pytest -m hardware --port /dev/ttyACM0`, after `tinydeploy deploy` or
`flash`): the firmware answers the protocol and its figures pass verify's own checks."""

import pytest

from tinydeploy.device.bench import bench
from tinydeploy.core.targets import Targets
from tinydeploy.device.verify import verify

pytestmark = pytest.mark.hardware


@pytest.fixture(scope="module")
def results(request, tmp_path_factory):
    port = request.config.getoption("--port")
    return bench(port, tmp_path_factory.mktemp("hardware"), runs=10, warmup=2).to_dict()


def test_the_board_reports_its_model_and_arena(results):
    assert results["complete"] and results["error"] is None
    assert not results["virtual"]
    assert len(results["model_sha256"]) == 64 and results["model_bytes"] > 0
    assert 0 < results["arena_used_bytes"] <= results["arena_bytes"]


def test_the_boards_timings_are_its_own_and_verifiable(results):
    latency = results["latency_us"]
    assert latency["runs"] == 10 and 0 < latency["min"] <= latency["median"] <= latency["max"]
    verdicts = verify(results, Targets(max_latency_ms=1e6, max_arena_kb=1e6, max_model_kb=1e6))
    assert verdicts and all(v.met for v in verdicts), [v.describe() for v in verdicts if not v.met]
