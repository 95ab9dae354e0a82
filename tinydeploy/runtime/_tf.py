"""The one place TensorFlow is imported.

tensorflow-model-optimization 0.8 works only with tf_keras (Keras 2), so
TF_USE_LEGACY_KERAS=1 must be set before TensorFlow's first import, and the
three packages must be the versions pyproject.toml pins.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata

from tinydeploy.core.errors import StepFailed

# package -> version prefix it must have (keep in step with pyproject.toml)
PINNED_STACK = {
    "tensorflow-cpu": "2.21.",
    "tf-keras": "2.21.",
    "tensorflow-model-optimization": "0.8.",
}


def check_stack() -> dict[str, str]:
    """Installed versions of the TensorFlow stack.

    Returns:
        {package: version}.

    Raises:
        StepFailed: a package is missing or not the pinned version.
    """
    found, wrong = {}, []
    for package, prefix in PINNED_STACK.items():
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            wrong.append(f"{package} is not installed (need {prefix}x)")
            continue
        if not found[package].startswith(prefix):
            wrong.append(f"{package} {found[package]} is installed (need {prefix}x)")
    if wrong:
        raise StepFailed("the TensorFlow stack does not match tinydeploy's pins: " + "; ".join(wrong)
                         + ". Reinstall with: pip install -e .")
    return found


def tensorflow():
    """Import TensorFlow with legacy Keras selected, after checking the pins."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    # TensorFlow's C++ logging (CUDA probing on a CPU machine, graph attribute
    # notes) is noise to tinydeploy's users; TF_CPP_MIN_LOG_LEVEL=0 brings it back.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    check_stack()
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    from tinydeploy.core._native import captured_native_output
    with captured_native_output():  # absl prints before its log level applies
        import tensorflow as tf
    return tf


def keras():
    """The tf_keras module (Keras 2), the only Keras tfmot accepts."""
    tensorflow()
    import tf_keras

    return tf_keras
