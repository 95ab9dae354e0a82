"""Datasets. The built-in demo is scikit-learn's bundled handwritten digits
(1,797 8x8 images, shipped inside the package: nothing is downloaded)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinydeploy.errors import BadInput


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray  # integer class indices into labels
    x_val: np.ndarray
    y_val: np.ndarray
    labels: list[str]  # class names in output order
    name: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def digits(size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's digits as (size, size, 1) images with raw pixel values 0..16.

    Args:
        size: output side in pixels (the 8x8 originals are resized bilinearly).
        val_fraction: share of each class held out for validation (stratified).
        seed: the split's seed.
    """
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 8 <= size <= 128:
        raise BadInput(f"digits image size must be 8..128 pixels, got {size}")
    bunch = load_digits()
    images = bunch.images.astype(np.float32)
    if size != 8:
        images = np.clip(zoom(images, (1, size / 8, size / 8), order=1), 0, 16)
    x = images[..., None].astype(np.float32)
    y = bunch.target.astype(np.int64)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=val_fraction, stratify=y, random_state=seed)
    return Dataset(x_train, y_train, x_val, y_val, [str(i) for i in range(10)], f"digits{size}")
