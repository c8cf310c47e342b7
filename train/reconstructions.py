"""The reconstruction grid: validation inputs above the model's reconstructions."""

from __future__ import annotations

from pathlib import Path

import keras
import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_reconstructions(model: keras.Model, images: np.ndarray, path: Path) -> None:
    """Saves a 2-row grid: ``images`` (N, H, W, C) in [0, 1] on top, their
    reconstructions below."""
    reconstructed = np.asarray(model.predict(images, verbose=0), dtype=np.float32)
    count = len(images)
    figure, axes = plt.subplots(2, count, figsize=(1.2 * count, 2.6), squeeze=False)
    for row, (title, batch) in enumerate((("input", images), ("reconstruction", reconstructed))):
        for column in range(count):
            axis = axes[row][column]
            image = np.clip(batch[column], 0.0, 1.0)
            if image.shape[-1] == 1:
                axis.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                axis.imshow(image)
            axis.set_axis_off()
        axes[row][0].set_title(title, fontsize=8, loc="left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
