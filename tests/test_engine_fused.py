"""Fused seeds (K runs as one JAX program) against the same runs trained one at a time on the
same backend (Keras's JAX backend, CPU). Runs in a subprocess: the backend is per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, TINY

pytest.importorskip("jax")

# Two images may sit on a near-tie between their top two classes; a ~1e-6 difference in the
# arithmetic order (vmapped vs single convolutions) can flip such an image. We allow a flip only
# where both engines give the image's true class nearly the same probability.
BORDERLINE = 1e-4


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    out = tmp_path_factory.mktemp("fused") / "both.json"
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO),
           "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, str(REPO / "tests" / "fused_check.py"), str(out),
                             str(TINY), "3"], capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def test_fused_runs_match_runs_trained_alone(both):
    fused, alone = both["fused"], both["alone"]
    assert sorted(fused) == sorted(alone) and len(fused) == 13  # 2 arms x 3 seeds, 2 wild, 2 short, 3 tight
    for run_id, want in alone.items():
        if run_id.startswith("wild-"):
            continue
        got = fused[run_id]
        assert got["backend"] == want["backend"] == "jax"
        assert got["status"] == want["status"]
        a = np.array(got["epochs"])[:, 1:].astype(float)
        b = np.array(want["epochs"])[:, 1:].astype(float)
        assert a.shape == b.shape
        # epoch, loss, accuracy, val_loss, val_accuracy, learning_rate, truth_accuracy
        np.testing.assert_array_equal(a[:, 0], b[:, 0])
        np.testing.assert_allclose(a[:, 1], b[:, 1], atol=1e-5, rtol=0)
        np.testing.assert_allclose(a[:, 3], b[:, 3], atol=1e-5, rtol=0)
        np.testing.assert_array_equal(a[:, 5], b[:, 5])           # same plateau decisions
        flips = [(p, q) for p, q in zip(got["predictions"], want["predictions"]) if p[4] != q[4]]
        assert all(abs(p[5] - q[5]) < BORDERLINE for p, q in flips), flips
        if not flips:
            np.testing.assert_array_equal(a[:, 4], b[:, 4])
        np.testing.assert_allclose(a[:, 2], b[:, 2], atol=2 / 120)   # <= 2 borderline images
        np.testing.assert_allclose(a[:, 6], b[:, 6], atol=2 / 100)


def test_a_diverging_run_stops_at_the_same_epoch_in_both_engines(both):
    for run_id in ("wild-plain/s0/f0", "wild-plain/s1/f0"):
        got, want = both["fused"][run_id], both["alone"][run_id]
        assert got["status"] == want["status"] == "diverged"
        assert len(got["epochs"]) == len(want["epochs"]) < 4
        assert not np.isfinite(got["epochs"][-1][2])


def test_different_seeds_differ_inside_a_pack(both):
    fused = both["fused"]
    assert fused["plain/s0/f0"]["epochs"] != fused["plain/s1/f0"]["epochs"]


def test_a_pack_of_unequal_validation_sizes_scores_each_run_on_its_own_images(both):
    """Two runs in one pack, validating on 30 and 23 images: each keeps its own n_val and its
    predictions cover exactly its images, every epoch (the comparison with the same runs
    trained alone is in test_fused_runs_match_runs_trained_alone)."""
    sizes = []
    for run_id in sorted(r for r in both["fused"] if r.startswith("short-")):
        got, want = both["fused"][run_id], both["alone"][run_id]
        assert got["n_val"] == want["n_val"]
        examples = sorted({p[2] for p in want["predictions"]})
        assert sorted({p[2] for p in got["predictions"]}) == examples
        assert len(got["predictions"]) == len(examples) * len(got["epochs"])
        sizes.append(got["n_val"])
    assert sorted(sizes) == [23, 30]


def test_a_pack_too_big_for_the_device_trains_as_sub_packs_that_fit(both):
    """With free memory for 2.5 runs (device_free_bytes replaced), a pack of 3 trains as
    sub-packs of 2 and 1; the runs are those trained alone (checked with the others above)."""
    engines = [both["fused"][f"tight-plain/s{seed}/f0"]["engine"] for seed in range(3)]
    assert engines == ["fused-2", "fused-2", "fused-1"]


def test_pack_memory_grows_linearly_in_k(both):
    """runs_that_fit extrapolates XLA's buffer assignment from K = 1 and 2: at K = 4 the
    pack's planned memory is that line's value to within 5 %."""
    memory = {int(k): v for k, v in both["memory"].items()}
    line = memory[1] + 3 * (memory[2] - memory[1])
    assert memory[2] > memory[1] > 0
    assert abs(memory[4] - line) <= 0.05 * memory[4], memory
