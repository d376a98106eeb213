"""Augmentation: ImageDataGenerator semantics checked against scipy.ndimage, draws a function of
(augment seed, epoch, image), and a real sweep with an augmenting arm that is deterministic."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from conftest import valstat
from valstat.augment import augment_batch, augment_image
from valstat.config import AugmentConfig
from valstat.store import load_tables


def _image(size=20, seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size, 3), np.uint8)
    image[3:9, 2:15] = 220                       # an off-centre bar, so every transform shows
    return np.clip(image + rng.integers(0, 30, image.shape), 0, 255).astype(np.uint8)


def test_no_settings_change_no_pixel():
    image = _image()
    out = augment_image(image, AugmentConfig(), seed=3, epoch=1, example=7)
    assert out.dtype == np.float32 and np.array_equal(out, image.astype(np.float32))


def test_draws_depend_on_seed_epoch_and_image_only():
    settings = AugmentConfig(rotation_range=30, width_shift_range=0.2, zoom_range=0.2,
                             horizontal_flip=True, brightness_range=[0.7, 1.3])
    images = np.stack([_image(seed=s) for s in range(4)])
    examples = np.array([11, 5, 42, 8])
    first = augment_batch(images, examples, settings, seed=1, epoch=2)
    order = np.array([2, 0, 3, 1])             # another batch composition, same images
    again = augment_batch(images[order], examples[order], settings, seed=1, epoch=2)
    assert np.array_equal(first[order], again)
    assert not np.array_equal(first, augment_batch(images, examples, settings, seed=1, epoch=3))
    assert not np.array_equal(first, augment_batch(images, examples, settings, seed=2, epoch=2))


def test_rotation_matches_scipy_rotate():
    image = _image()
    settings = AugmentConfig(rotation_range=25)
    angle = np.random.default_rng([4, 0, 9]).uniform(-25, 25)   # the draw for (seed, epoch, image)
    expected = ndimage.rotate(image.astype(np.float32), angle, reshape=False, order=1,
                              mode="nearest")
    out = augment_image(image, settings, seed=4, epoch=0, example=9)
    assert np.allclose(out, np.clip(expected, 0, 255), atol=1e-3)


def test_width_shift_matches_scipy_shift():
    image = _image()
    settings = AugmentConfig(width_shift_range=0.2)
    rng = np.random.default_rng([0, 5, 2])
    rng.uniform(0, 0), rng.uniform(0, 0)                # the unused angle and height draws
    fraction = rng.uniform(-0.2, 0.2)
    expected = ndimage.shift(image.astype(np.float32), (0, fraction * 20, 0), order=1,
                             mode="nearest")
    out = augment_image(image, settings, seed=0, epoch=5, example=2)
    assert np.allclose(out, expected, atol=1e-3)


def test_flip_mirrors_about_half_the_images_and_brightness_scales():
    image = _image()
    flipped = [np.array_equal(augment_image(image, AugmentConfig(horizontal_flip=True), 0, 0, i),
                              image[:, ::-1].astype(np.float32)) for i in range(400)]
    assert 160 < sum(flipped) < 240           # Binomial(400, 1/2): 4.5 sd either side
    rng = np.random.default_rng([0, 0, 1])
    rng.uniform(0, 0, size=3), rng.uniform(1, 1, size=2)   # angle, shifts, zoom: unused
    factor = rng.uniform(0.5, 0.8)
    darker = augment_image(image, AugmentConfig(brightness_range=[0.5, 0.8]), 0, 0, 1)
    assert np.allclose(darker, image * factor, atol=1e-3)


@pytest.mark.parametrize("table, fragment", [
    ("augment = { zoom_range = 1.5 }", "zoom_range must be a fraction"),
    ("augment = { brightness_range = [1.2, 0.8] }", "brightness_range must be [low, high]"),
    ("augment = { shear = 0.2 }", "unknown key 'shear'"),
])
def test_bad_augment_settings_are_one_line(tmp_path, table, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(f"[arms.a]\n{table}\n")
    result = valstat("run", path, "--out", tmp_path / "out", "--quiet")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr


def _tiny_augment_experiment(folder, vary: str, augment: str):
    """A 2-arm x 2-seed, 2-epoch experiment at 16 px: arm `none` and arm `flip` with `augment`."""
    path = folder / "aug.toml"
    path.write_text(f"""name = "aug"
[data]
image_size = 16
train_size = 120
truth_size = 100
[sweep]
seeds = 2
{vary}
[training]
epochs = 2
[model]
width = 0.1
dense_units = 32
[arms.none]
[arms.flip]
augment = {{ {augment} }}
""")
    return path


def test_a_sweep_with_augmentation_is_deterministic_and_records_its_seed(tmp_path):
    path = _tiny_augment_experiment(tmp_path, 'vary = ["split", "init", "order"]',
                                    "horizontal_flip = true, rotation_range = 15.0")
    curves = []
    for out in ("a", "b"):
        result = valstat("run", path, "--out", tmp_path / out, "--quiet", "--workers", "1")
        assert result.returncode == 0, result.stderr
        tables = load_tables(tmp_path / out)
        curves.append(tables.epochs.sort_values(["run_id", "epoch"]).reset_index(drop=True))
        assert set(tables.runs.augment_seed) == {0}           # held fixed by [sweep] vary
        assert tables.meta["arms_config"]["flip"]["augment"]["horizontal_flip"] is True
        assert "augment" not in tables.meta["arms_config"]["none"]
    assert curves[0].equals(curves[1])
    by_arm = curves[0].assign(arm=curves[0].run_id.str.split("/").str[0])
    none, flip = (by_arm[by_arm.arm == arm].loss.to_numpy() for arm in ("none", "flip"))
    assert not np.array_equal(none, flip)   # same seeds and splits: only augmentation differs


def test_the_fused_engine_trains_an_augmenting_arm_one_run_at_a_time(tmp_path):
    pytest.importorskip("jax")
    path = _tiny_augment_experiment(tmp_path, "", "horizontal_flip = true")
    result = valstat("run", path, "--out", tmp_path / "out", "--quiet", "--engine", "fused",
                     "--device", "cpu")
    assert result.returncode == 0, result.stderr
    tables = load_tables(tmp_path / "out")
    assert sorted(tables.runs.run_id) == ["flip/s0/f0", "flip/s1/f0", "none/s0/f0", "none/s1/f0"]
    assert set(tables.runs.backend) == {"jax"}
    assert tables.runs.set_index("run_id").augment_seed.to_dict() == {
        "flip/s0/f0": 0, "flip/s1/f0": 1, "none/s0/f0": 0, "none/s1/f0": 1}
