"""Train a small int8 CNN on the built-in digits data and write it as .tflite.

Used by `make demo` to have a model to inspect.
Run: .venv/bin/python examples/digits_model.py OUT.tflite
"""

import sys
from pathlib import Path

from tinydeploy import _tf, data
from tinydeploy.convert import to_int8_tflite


def main(out: str) -> None:
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    ds = data.digits(size=32)
    layers = keras.layers
    model = keras.Sequential([
        layers.Input(ds.input_shape),
        layers.Rescaling(1 / 16),  # raw pixels 0..16 in, the model normalizes
        layers.Conv2D(8, 3, strides=2, activation="relu"),
        layers.DepthwiseConv2D(3, activation="relu"),
        layers.Conv2D(16, 1, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(32, 3, activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(len(ds.labels), activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(ds.x_train, ds.y_train, epochs=15, batch_size=32, verbose=0,
              validation_data=(ds.x_val, ds.y_val))
    _, accuracy = model.evaluate(ds.x_val, ds.y_val, verbose=0)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_bytes(to_int8_tflite(model, ds.x_train))
    print(f"wrote {out} (float validation accuracy {accuracy:.3f})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/demo/model.tflite")
