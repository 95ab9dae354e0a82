"""The names of the engines and frameworks, written once.

Boards (core) name the engines they run and the framework they build with, and core cannot
import codegen, so the names live here; the registries (tinydeploy/codegen/engines.py and
frameworks.py) give them to their classes, and every other module uses these constants
(tests/test_architecture.py fails on a literal name anywhere else).
"""

TFLM = "tflm"  # the TFLite Micro interpreter
C = "c"  # the model as plain C, statically planned (tinydeploy/codegen/cengine)
ENGINE_NAMES = (TFLM, C)

ESPIDF = "espidf"  # ESP-IDF through PlatformIO
ARDUINO = "arduino"  # Arduino-ESP32 through PlatformIO
MAKE = "make"  # a board's own cross compiler, driven by a Makefile
FRAMEWORK_NAMES = (ESPIDF, ARDUINO, MAKE)
