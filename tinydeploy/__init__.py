"""tinydeploy: from data to a verified TinyML firmware for ESP32 boards.

Importing the package is cheap: TensorFlow and the TFLM runtime are imported
only by the stages that need them.
"""

__version__ = "0.1.0"
