import numpy as np
import pytest

from tinydeploy.core import data
from tinydeploy.core.errors import BadInput

pytestmark = pytest.mark.unit


def save(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


def images(n, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1), dtype=np.float32), np.arange(n) % classes


def test_digits_are_raw_stratified_and_seeded():
    a, b = data.load("digits", image_size=16, seed=1), data.load("digits", image_size=16, seed=1)
    assert a.input_shape == (16, 16, 1) and a.kind == "image"
    assert a.x_train.max() > 1  # raw pixel values (0..16), not normalized
    assert a.labels == [str(i) for i in range(10)]
    assert np.array_equal(a.y_val, b.y_val)
    shares = np.bincount(a.y_val) / len(a.y_val)
    assert shares.max() - shares.min() < 0.02  # stratified


def test_npz_with_string_labels_and_given_validation(tmp_path):
    x, y = images(30)
    names = np.array(["wave", "tap", "idle"])[y]
    ds = data.load(save(tmp_path, x_train=x, y_train=names, x_val=x[:6], y_val=names[:6]))
    assert ds.labels == ["idle", "tap", "wave"]
    assert ds.val_given and len(ds.x_val) == 6
    assert [ds.labels[i] for i in ds.y_val] == list(names[:6])


def test_csv_sensor_windows(tmp_path):
    path = tmp_path / "gestures.csv"
    header = ["label"] + [f"{c}_{t}" for t in range(4) for c in ("ax", "ay")]
    rows = [[("up" if i % 2 else "down")] + [str(i + j) for j in range(8)] for i in range(10)]
    path.write_text("\n".join(",".join(r) for r in [header] + rows))
    ds = data.load(str(path))
    assert ds.input_shape == (4, 2) and ds.kind == "series"
    assert ds.labels == ["down", "up"]
    x, _ = ds.all_samples
    assert sorted(x[:, 0, 1].tolist()) == [float(i + 1) for i in range(10)]  # ay_0 = i + 1


def test_univariate_windows_are_one_channel_series(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 24)).astype(np.float32), np.arange(30) % 2  # (N, T), as UCR sets are kept
    ds = data.load(save(tmp_path, x_train=x, y_train=y, x_test=x[:10], y_test=y[:10]))
    assert ds.input_shape == (24, 1) and ds.kind == "series"
    assert ds.x_test.shape == (10, 24, 1) and np.array_equal(ds.x_test[:, :, 0], x[:10])


@pytest.mark.parametrize("arrays, message", [
    (lambda x, y: dict(x_train=x, y_train=y[:-1]), "30 samples but 29 labels"),
    (lambda x, y: dict(x_train=np.where(x > 0.99, np.nan, x), y_train=y), "NaN or Inf"),
    (lambda x, y: dict(x_train=np.where(x > 0.99, np.inf, x), y_train=y), "NaN or Inf"),
    (lambda x, y: dict(x_train=x * 1e20, y_train=y), "values as large as 1e\\+20.*rescale"),
    (lambda x, y: dict(x_train=x, y_train=np.zeros_like(y)), "only one class"),
    (lambda x, y: dict(x_train=x[:7], y_train=np.array([0, 0, 0, 1, 1, 1, 2])), "fewer than 2 samples"),
    (lambda x, y: dict(x_train=x.reshape(-1)[:30], y_train=y), "not supported"),
    (lambda x, y: dict(x_train=x[:, :, :, :, None], y_train=y), "not supported"),
    (lambda x, y: dict(x_train=x[:0], y_train=y[:0]), "no samples"),
    (lambda x, y: dict(y_train=y), "missing arrays x_train"),
])
def test_bad_data_is_refused(tmp_path, arrays, message):
    x, y = images(30)
    with pytest.raises(BadInput, match=message):
        data.load(save(tmp_path, **arrays(x, y)))


def test_empty_and_unknown_sources(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(BadInput, match="empty"):
        data.load(str(empty))
    with pytest.raises(BadInput, match="give a built-in dataset \\(digits\\) or a .npz or .csv"):
        data.load("mnist")
    with pytest.raises(BadInput, match="no such file"):
        data.load(str(tmp_path / "missing.npz"))


def test_few_windows_of_many_classes_still_split_with_every_class_validated():
    # 40 windows of 10 classes: 20% would be 8 validation samples, fewer than the classes.
    x, y = images(40, classes=10)
    dataset = data.from_arrays(x, y, None, None, "few")
    assert sorted(set(dataset.y_val)) == list(range(10)) and len(dataset.x_train) == 30


def test_a_constant_channel_is_not_blown_up_by_normalization():
    from tinydeploy.optimize.architectures import Normalization
    x = np.random.default_rng(0).normal(5, 2, (50, 8, 3)).astype(np.float32)
    x[..., 0] = 0.0  # e.g. the always-blank first column of the digits, read as a series
    norm = Normalization.of(x)
    assert norm.std[0] == 1.0 and 1.5 < norm.std[1] < 2.5


def test_wilson_interval_is_honest_for_few_samples():
    from tinydeploy.runtime.evaluate import describe_accuracy, wilson_interval
    low, high = wilson_interval(8, 10)
    assert abs(low - 0.490) < 0.002 and abs(high - 0.943) < 0.002
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 10)[0] == 0.0
    assert describe_accuracy(0.8, 10) == "80.0% of 10 (95% CI 49.0-94.3%)"
