"""scikit-learn's digits data set (1797 8x8 images, 10 classes; ships with the package, no download).

Images are scaled from 0..16 to [0, 1] and shaped [N, 1, 8, 8] (float32); labels int64.
The train/test split is stratified and fixed by the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


@dataclass
class DigitsSplit:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_split(seed: int, test_fraction: float = 0.2, train_subset: int | None = None) -> DigitsSplit:
    """Stratified split of the digits data; ``train_subset`` keeps the first n training samples."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    data = load_digits()
    x = (data.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = data.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    if train_subset is not None:
        if train_subset < 1:
            raise ValueError(f"train_subset must be >= 1, got {train_subset}")
        xtr, ytr = xtr[:train_subset], ytr[:train_subset]
    return DigitsSplit(torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), torch.from_numpy(yte))
