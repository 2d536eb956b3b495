#!/usr/bin/python3
"""Fixtures for click simulation and augmentation (tests/data/clicksim/), made with scipy/skimage/numpy.

Run with Debian's python (/usr/bin/python3 scripts/gen_fixtures_clicksim.py); CI never runs it.
  cdt.bin     scipy.ndimage.distance_transform_cdt (default metric: chessboard) on 2D and 3D masks
  cc.bin      skimage.measure.label (full connectivity) on 2D masks, and on (1,H,W) masks as MONAI calls it
  seeds.bin   the deterministic part of MONAI's FindAllValidSlices/AddInitialSeedPoint on a small label volume
  rot90.bin   numpy.rot90 over axes (0,1) of a 3D array, k = 1, 2, 3
"""
import os
import sys

import numpy as np
from scipy import ndimage
from skimage import measure

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import write_fixture  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "clicksim")


def blobs(rng, shape, density, smooth):
    """Random masks with blob-like regions (Gaussian-smoothed noise thresholded at a quantile)."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), smooth)
    return (noise > np.quantile(noise, 1.0 - density)).astype(np.uint8)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261127)

    # ---- distance transform -------------------------------------------------------------------
    masks2d = {
        "random_sparse": (rng.random((13, 17)) < 0.3).astype(np.uint8),
        "random_dense": (rng.random((16, 16)) < 0.85).astype(np.uint8),
        "blobs": blobs(rng, (40, 33), 0.5, 3.0),
        "full": np.ones((7, 9), np.uint8),
        "empty": np.zeros((6, 5), np.uint8),
        "border": np.pad(np.ones((10, 6), np.uint8), ((0, 0), (0, 5))),  # touches 3 borders
        "single_out": np.ones((9, 11), np.uint8),
        "line": np.ones((1, 12), np.uint8),
    }
    masks2d["single_out"][4, 7] = 0
    masks2d["line"][0, 3] = 0
    masks3d = {
        "random": (rng.random((9, 10, 11)) < 0.7).astype(np.uint8),
        "blobs": blobs(rng, (24, 20, 22), 0.55, 2.5),
        "full": np.ones((4, 5, 6), np.uint8),
        "empty": np.zeros((3, 4, 5), np.uint8),
        "border": np.pad(np.ones((12, 9, 7), np.uint8), ((3, 0), (0, 2), (0, 0))),
        "single_out": np.ones((10, 8, 9), np.uint8),
    }
    masks3d["single_out"][2, 6, 1] = 0
    t = {}
    for name, m in masks2d.items():
        t["2d/" + name + "/mask"] = m
        t["2d/" + name + "/dist"] = ndimage.distance_transform_cdt(m).astype(np.int64)
    for name, m in masks3d.items():
        t["3d/" + name + "/mask"] = m
        t["3d/" + name + "/dist"] = ndimage.distance_transform_cdt(m).astype(np.int64)
    write_fixture(os.path.join(OUT, "cdt.bin"), t)

    # ---- connected components -----------------------------------------------------------------
    t = {}
    cc = {
        "random": (rng.random((20, 23)) < 0.45).astype(np.uint8),
        "blobs": blobs(rng, (48, 40), 0.3, 2.0),
        "diagonal": np.eye(8, dtype=np.uint8) + np.fliplr(np.eye(8, dtype=np.uint8)),  # one X-shaped component
        "checker": (np.indices((9, 9)).sum(0) % 2).astype(np.uint8),  # 8-connected: one component
        "full": np.ones((5, 6), np.uint8),
        "empty": np.zeros((4, 4), np.uint8),
        "u_shape": np.array([[1, 0, 0, 0, 1], [1, 0, 1, 0, 1], [1, 0, 1, 0, 1], [1, 1, 1, 1, 1]], np.uint8),
    }
    for name, m in cc.items():
        lab = measure.label(m.astype(int), background=0, connectivity=2)
        lab_monai = measure.label(m[np.newaxis].astype(int), background=0)[0]  # MONAI: (1,H,W), default connectivity
        assert (lab == lab_monai).all()
        t[name + "/mask"] = m
        t[name + "/labels"] = lab.astype(np.int64)
    write_fixture(os.path.join(OUT, "cc.bin"), t)

    # ---- deterministic part of the initial seeds (MONAI AddInitialSeedPointMissingLabelsd) --------
    # label volume (H, W, D) with 0/1, depth last. Spleen on some slices, with several blobs on one of them.
    H, W, D = 30, 26, 7
    lab = np.zeros((H, W, D), np.uint8)
    lab[5:15, 4:12, 1:5] = 1
    lab[20:24, 18:25, 3] = 1
    lab[2:4, 20:22, 3] = 1
    lab[26, 2, 3] = 1
    lab[10:12, 15:17, 3] = 1
    lab[28:30, 0:26, 3] = 1  # touches the border
    lab[24:27, 10:13, 3] = 1  # 6th component on slice 3 (ignored: only 1..5 used)
    t = {"label": lab}
    for z in range(D):
        for name, value in (("spleen", 1), ("background", 0)):
            m = (lab[:, :, z] == value).astype(np.uint8)
            blobs_labels = measure.label(m[np.newaxis].astype(int), background=0)[0]
            t["z%d/%s/components" % (z, name)] = blobs_labels.astype(np.int64)
            for r in range(1, 6):
                comp = (blobs_labels == r).astype(np.float32)[np.newaxis]
                if comp.sum() == 0:
                    continue
                t["z%d/%s/dist%d" % (z, name, r)] = ndimage.distance_transform_cdt(comp)[0].astype(np.int64)
    for name, value in (("spleen", 1), ("background", 0)):
        ids = [z for z in range(D) if value in lab[:, :, z]]
        t["valid/" + name] = np.array(ids if ids else [-1] * 10, np.int64)
    write_fixture(os.path.join(OUT, "seeds.bin"), t)

    # ---- rot90 over axes (0, 1) ----------------------------------------------------------------
    a = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2)
    t = {"input": a}
    for k in (1, 2, 3):
        t["k%d" % k] = np.ascontiguousarray(np.rot90(a, k, axes=(0, 1)))
    write_fixture(os.path.join(OUT, "rot90.bin"), t)
    print("wrote fixtures to", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
