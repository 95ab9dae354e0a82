"""Test tiers: `unit` (pure Python), `host` (TensorFlow, C compiler, PlatformIO
parser, ptys), `slow` (trains models) and `hardware` (a real board on --port,
skipped without one). Every test carries a tier; one without is an error, not
a test that `-m` silently drops.

Property tests are deterministic: the `tinydeploy` Hypothesis profile, loaded here for
every run (CI or not), draws each test's examples from a seed derived from the test's own
source (derandomize=True, which implies no example database), with no deadline and no
too-slow health check, so the same checkout tests the same examples on any machine and
at any load. A crash the long fuzzing finds (bench/fuzz.py) is pinned with @example."""

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]

TIERS = ("unit", "host", "slow", "hardware")
# Modules whose tests share a fixture that runs optimize or trains models for minutes. Under
# pytest-xdist (make test runs two workers) each runs whole on one worker, so that fixture is
# built once, not once per worker; every other test is scheduled on its own (pytest_xdist_make_scheduler).
ONE_WORKER_MODULES = ("tests/test_optimize_pipeline.py", "tests/test_frontend_optimize.py", "tests/test_export.py",
                      "tests/test_frontend_firmware.py")
TIMING_CHECKS = {HealthCheck.too_slow}

settings.register_profile("tinydeploy", derandomize=True, deadline=None, print_blob=False,
                          suppress_health_check=sorted(TIMING_CHECKS, key=lambda c: c.value))
settings.load_profile("tinydeploy")


def _deterministic(items) -> None:
    """Every @given test runs derandomized, and none depends on timing: a test's own @settings
    may change max_examples or its health checks, but the deadline and too-slow check it would
    bring back are taken away again (a loaded 2-core CI machine must not fail a test)."""
    for item in items:
        test = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if own is None:
            continue
        if not own.derandomize or own.database is not None:
            raise pytest.UsageError(f"{item.nodeid}: a property test must run derandomized, without an "
                                    "example database (the tinydeploy Hypothesis profile)")
        suppressed = set(own.suppress_health_check)
        if own.deadline is not None or not TIMING_CHECKS <= suppressed:
            test._hypothesis_internal_use_settings = settings(
                own, deadline=None, suppress_health_check=sorted(suppressed | TIMING_CHECKS, key=lambda c: c.value))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """-n's default (--dist load), a test at a time, but a module of ONE_WORKER_MODULES at once.
    (xdist's own loadgroup marks tests by rewriting their node ids, which pytest 9 no longer lets
    it do.) Another --dist is xdist's own."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class OneWorkerModules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER_MODULES else nodeid

    return OneWorkerModules(config, log)


def pytest_addoption(parser):
    parser.addoption("--port", default=None, help="serial port of a real board, for hardware tests")


@pytest.hookimpl(tryfirst=True)  # before -m deselects anything
def pytest_collection_modifyitems(config, items):
    untiered = [item.nodeid for item in items if not any(item.get_closest_marker(t) for t in TIERS)]
    if untiered:
        raise pytest.UsageError(f"tests without a tier ({', '.join(TIERS)}): {', '.join(untiered)}")
    _deterministic(items)
    if config.getoption("--port"):
        return
    skip = pytest.mark.skip(reason="needs a board: pass --port")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def rv32_tools():
    """The emulated board's cross compiler and QEMU (skipped locally without them, failed under CI)."""
    from tests.helpers import need_programs
    need_programs("riscv64-unknown-elf-gcc", "qemu-system-riscv32",
                  packages="gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def int8_cnn(models_dir):
    """A small int8 CNN (.tflite path); its first layer is Conv2D(8, 3x3) on 32x32x1."""
    from tests import models
    return models.write(models_dir / "int8_cnn.tflite", models.int8_cnn())


@pytest.fixture(scope="session")
def int8_cnn_per_tensor_dense(models_dir):
    """int8_cnn with its dense layer quantized per tensor, not per channel: what the Arduino
    library's CMSIS-NN FULLY_CONNECTED computes exactly."""
    from tests import models
    return models.write(models_dir / "int8_cnn_per_tensor_dense.tflite", models.int8_cnn(per_tensor_dense=True))


@pytest.fixture(scope="session")
def float_cnn(models_dir):
    from tests import models
    return models.write(models_dir / "float_cnn.tflite", models.float_cnn())


@pytest.fixture(scope="session")
def unsupported_ops_model(models_dir):
    """A model with two ops TFLM lacks (TOPK_V2 and REDUCE_PROD)."""
    from tests import models
    return models.write(models_dir / "unsupported.tflite", models.unsupported_ops())
