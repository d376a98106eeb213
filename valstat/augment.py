"""Training-image augmentation in the vocabulary of Keras's `ImageDataGenerator`.

Each draw is a function of (augment seed, epoch, image index) alone, so a rerun and a resumed
sweep see the same images, and batch order or worker layout cannot change them. The transforms
follow `ImageDataGenerator` (which applied them with scipy.ndimage): one affine map per image
(rotation, shift, zoom) with nearest-edge fill, then the flip, then a brightness factor. They run on the
host on uint8 batches, so every backend and engine sees the same pixels. Validation and truth
images never pass through here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def is_identity(settings) -> bool:
    """True when `settings` (AugmentConfig) changes no image."""
    return not (settings.horizontal_flip or settings.rotation_range or settings.width_shift_range
                or settings.height_shift_range or settings.zoom_range or settings.brightness_range)


def _draws(settings, seed: int, epoch: int, example: int) -> tuple:
    """(flip, angle in radians, (row, col) shift as fractions, (row, col) zoom, brightness)."""
    rng = np.random.default_rng([seed, epoch, example])
    flip = bool(settings.horizontal_flip) and rng.random() < 0.5
    angle = np.deg2rad(rng.uniform(-settings.rotation_range, settings.rotation_range))
    shift = np.array([rng.uniform(-settings.height_shift_range, settings.height_shift_range),
                      rng.uniform(-settings.width_shift_range, settings.width_shift_range)])
    zoom = rng.uniform(1 - settings.zoom_range, 1 + settings.zoom_range, size=2)
    low, high = settings.brightness_range or (1.0, 1.0)
    return flip, angle, shift, zoom, rng.uniform(low, high)


def augment_image(image: np.ndarray, settings, seed: int, epoch: int, example: int) -> np.ndarray:
    """One augmented image (S, S, 3) float32 in [0, 255] from image (S, S, 3) uint8."""
    flip, angle, shift, zoom, brightness = _draws(settings, seed, epoch, example)
    size = image.shape[0]
    out = image.astype(np.float32)
    if angle or shift.any() or np.any(zoom != 1):
        cos, sin = np.cos(angle), np.sin(angle)
        # output pixel p (row, col) reads input pixel matrix @ (p - centre) + centre - shift
        matrix = np.array([[cos, sin], [-sin, cos]]) @ np.diag(zoom)
        centre = np.full(2, (size - 1) / 2)
        offset = centre - matrix @ centre - shift * size
        out = np.stack([ndimage.affine_transform(out[..., c], matrix, offset, order=1,
                                                 mode="nearest") for c in range(out.shape[2])],
                       axis=-1)
    if flip:
        out = out[:, ::-1]
    if brightness != 1.0:
        out = out * brightness
    return np.clip(out, 0.0, 255.0).astype(np.float32)


def augment_batch(images: np.ndarray, examples: np.ndarray, settings, seed: int,
                  epoch: int) -> np.ndarray:
    """Augmented batch (B, S, S, 3) float32 from images (B, S, S, 3) uint8 whose global image
    indices are examples (B,); the same (seed, epoch, example) always gives the same pixels."""
    return np.stack([augment_image(image, settings, seed, epoch, int(example))
                     for image, example in zip(images, examples)])
