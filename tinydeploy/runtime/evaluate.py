"""`tinydeploy evaluate`: the accuracy of an int8 model as the board runs it,
measured on the TFLM interpreter over raw labelled data."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinydeploy.runtime.tflm import TflmRunner
from tinydeploy.core.errors import BadInput
from tinydeploy.core.frontend import model_frontend
from tinydeploy.core.model import Model


def quantize_input(model: Model, x: np.ndarray) -> np.ndarray:
    """Raw inputs -> the model's int8 input.

    A model whose metadata holds a front end (core.frontend.model_frontend) takes raw windows
    [steps, channels] through it: front.quantized(windows), its int8 features, as the device
    computes them. Inputs already shaped like the model's input (a model without a front end,
    or features given directly) are quantised with its own scale and zero point.
    """
    tensor = model.input_tensors[0]
    if tensor.dtype != "INT8" or tensor.quantization is None:
        raise BadInput(f"{model.path}: the input is {tensor.dtype.lower()}, not quantized int8; "
                       "run `tinydeploy optimize` or give a fully int8 model")
    front = _front_end(model)
    if front is not None and tuple(x.shape[1:]) == front[1]:
        return front[0].quantized(x).reshape(len(x), *model.input_tensors[0].shape[1:])
    scale, zero = tensor.quantization.scales[0], tensor.quantization.zero_points[0]
    return np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)


def _front_end(model: Model):
    """(the model's front end, its raw window shape) from the metadata, checked against the
    model's input, or None."""
    found = model_frontend(model.meta)
    if found is None:
        return None
    front, window = found
    if front.output is None:
        raise BadInput(f"{model.path}: the front end in the metadata has no int8 output quantisation")
    expected = tuple(model.input_tensors[0].shape[1:])
    made = tuple(front.output_shape(window))
    if int(np.prod(made)) != int(np.prod(expected)):
        raise BadInput(f"{model.path}: its front end makes features {made} from windows {window}, but the model "
                       f"takes {expected}")
    return front, window


def _check_shape(model: Model, x: np.ndarray) -> None:
    expected = tuple(model.input_tensors[0].shape[1:])
    front = _front_end(model)
    if front is not None and tuple(x.shape[1:]) == front[1]:
        return
    if tuple(x.shape[1:]) != expected:
        raw = f" (or raw windows {front[1]} through its front end)" if front is not None else ""
        raise BadInput(f"data samples are {tuple(x.shape[1:])} but {model.path} takes {expected}{raw}")


def reference_outputs(model: Model, x_int8: np.ndarray) -> np.ndarray:
    """Outputs of TFLite's reference kernels (tf.lite.Interpreter, BUILTIN_REF) for int8 inputs."""
    from tinydeploy.runtime import _tf
    import warnings
    tf = _tf.tensorflow()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notice; the reference kernels are what we need
        interpreter = tf.lite.Interpreter(
            model_content=model.data,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    results = []
    for sample in x_int8:
        interpreter.set_tensor(inp, sample[None, ...])
        interpreter.invoke()
        results.append(interpreter.get_tensor(out).reshape(-1))
    return np.stack(results)


@dataclass
class Evaluation:
    accuracy: float
    samples: int
    predictions: np.ndarray
    outputs: np.ndarray  # int8 outputs from TFLM

    def to_dict(self) -> dict:
        low, high = wilson_interval(round(self.accuracy * self.samples), self.samples)
        return {"accuracy": round(self.accuracy, 5), "samples": self.samples,
                "interval95": [round(low, 4), round(high, 4)], "basis": "int8 model on the TFLM interpreter"}


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy of correct/n (E. B. Wilson, 1927): honest
    for the few samples a small validation or test set has, where p ± 1.96·se is not."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def describe_accuracy(accuracy: float, samples: int) -> str:
    """'92.5% of 40 (95% CI 80.1-97.4%)': an accuracy with its sample count and interval."""
    low, high = wilson_interval(round(accuracy * samples), samples)
    return f"{accuracy * 100:.1f}% of {samples} (95% CI {low * 100:.1f}-{high * 100:.1f}%)"


def evaluate_file(model_path, source: str, image_size: int = 32, seed: int = 0) -> dict:
    """`tinydeploy evaluate`: int8 accuracy of a .tflite file on raw labelled data.

    The model's output order is its metadata's labels (optimize stores them); for a model
    without them, the data's class names, sorted (the order `optimize` uses). A model with a
    front end in its metadata is evaluated on the raw windows through it. The built-in digits are evaluated on the
    validation split optimize holds out; a file on its validation set if it
    has one, otherwise on every sample.
    """
    from tinydeploy.core import data
    from tinydeploy.core.model import load_model
    model = load_model(model_path)
    dataset = data.load(source, image_size=image_size, seed=seed)
    outputs = model.output_tensors[0].elements
    if model.labels and list(model.labels) != list(dataset.labels):
        dataset = _relabelled(dataset, model.labels, model.path)
    if outputs != len(dataset.labels):
        raise BadInput(f"{model.path} has {outputs} outputs but the data has {len(dataset.labels)} classes "
                       f"({', '.join(dataset.labels[:10])})")
    if source in data.BUILTIN:  # the same seeded validation split optimize holds out
        x, y, split = dataset.x_val, dataset.y_val, f"validation split (seed {seed})"
    else:
        x, y = dataset.all_samples
        split = "validation set" if dataset.val_given else "all samples"
    result = evaluate(model, x, y)
    front = _front_end(model)
    return {"model": str(model_path), "sha256": model.sha256, "data": source, "labels": dataset.labels,
            "split": split, **result.to_dict(),
            **({"frontend": front[0].describe(), "window": list(front[1]),
                "basis": "the front end on the raw windows, then the int8 model on the TFLM interpreter"}
               if front is not None and tuple(x.shape[1:]) == front[1] else {})}


def _relabelled(dataset, labels, where: str):
    """The dataset with its labels in the model's output order (the same names, another order)."""
    from dataclasses import replace
    if sorted(labels) != sorted(dataset.labels):
        raise BadInput(f"{where} was trained on classes {', '.join(list(labels)[:10])}; the data has "
                       f"{', '.join(dataset.labels[:10])}")
    order = np.array([list(labels).index(name) for name in dataset.labels])
    moved = {k: order[getattr(dataset, k)] for k in ("y_train", "y_val", "y_test") if getattr(dataset, k) is not None}
    return replace(dataset, labels=list(labels), **moved)


def evaluate(model: Model, x: np.ndarray, y: np.ndarray, arena_bytes: int | None = None) -> Evaluation:
    """Top-1 accuracy of the int8 model on the TFLM interpreter over raw inputs x.

    Args:
        model: a full-int8 model; with a front end in its metadata, raw windows go through it
            first (front.quantized, then the int8 features on TFLM: what the device computes).
        x: raw inputs (N, ...), as the sensor or image gives them.
        y: integer class indices (N,).
        arena_bytes: the model's measured arena, when already known.
    """
    _check_shape(model, x)
    if len(x) == 0:
        raise BadInput("no samples to evaluate")
    inputs = quantize_input(model, x).reshape(len(x), *model.input_tensors[0].shape[1:])
    outputs = TflmRunner(model, arena_bytes).predict_int8(inputs)
    predictions = outputs.argmax(axis=1)
    return Evaluation(float((predictions == y).mean()), int(len(y)), predictions, outputs)


def compare_with_reference(model: Model, x: np.ndarray, tflm_outputs: np.ndarray) -> dict:
    """Top-1 agreement and largest int8 output difference, TFLM vs TFLite's reference kernels."""
    reference = reference_outputs(model, quantize_input(model, x))
    diff = np.abs(reference.astype(np.int32) - tflm_outputs.astype(np.int32))
    return {"top1_agreement": round(float((reference.argmax(1) == tflm_outputs.argmax(1)).mean()), 5),
            "max_output_diff_lsb": int(diff.max()), "samples": int(len(x)),
            "reference": "tf.lite.Interpreter with the BUILTIN_REF op resolver"}
