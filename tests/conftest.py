"""Test tiers: `unit` (pure Python), `host` (TensorFlow, C compiler, PlatformIO
parser, ptys), `slow` (trains models) and `hardware` (a real board on --port,
skipped without one). Every test carries a tier; one without is an error, not
a test that `-m` silently drops."""

import pytest

pytest_plugins = ["pytester"]

TIERS = ("unit", "host", "slow", "hardware")


def pytest_addoption(parser):
    parser.addoption("--port", default=None, help="serial port of a real board, for hardware tests")


@pytest.hookimpl(tryfirst=True)  # before -m deselects anything
def pytest_collection_modifyitems(config, items):
    untiered = [item.nodeid for item in items if not any(item.get_closest_marker(t) for t in TIERS)]
    if untiered:
        raise pytest.UsageError(f"tests without a tier ({', '.join(TIERS)}): {', '.join(untiered)}")
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
def float_cnn(models_dir):
    from tests import models
    return models.write(models_dir / "float_cnn.tflite", models.float_cnn())


@pytest.fixture(scope="session")
def unsupported_ops_model(models_dir):
    """A model with two ops TFLM lacks (TOPK_V2 and REDUCE_PROD)."""
    from tests import models
    return models.write(models_dir / "unsupported.tflite", models.unsupported_ops())
