"""The heatmap codec: keypoints in the crop frame <-> Gaussian heatmaps (mmpose's MSRAHeatmap + DARK decoding).

Frames: crop points use geometry.py's pixel-corner convention (crop pixel i covers [i, i+1)). A heatmap pixel j
covers crop x in [j * stride, (j + 1) * stride), so its centre is the continuous heatmap coordinate j + 0.5 and
``x_crop = x_heatmap * stride``. With this convention a horizontal flip of the crop (x -> W - x) is exactly a
reversal of the heatmap columns, so flip test needs no one-pixel shift.

Sub-pixel decoding is DARK's (Zhang et al., CVPR 2020): the heatmap is smoothed with the training Gaussian, its log
is expanded to second order around the argmax and the Taylor step ``-H^-1 g`` refines the peak. A Gaussian target is
an exact quadratic in log space, so encode -> decode returns the point to floating-point accuracy away from borders.
"""
from __future__ import annotations

import cv2
import numpy as np


def stride_of(crop_size: tuple[int, int], heatmap_size: tuple[int, int]) -> tuple[float, float]:
    """Crop pixels per heatmap pixel along x and y; sizes are (width, height)."""
    return crop_size[0] / heatmap_size[0], crop_size[1] / heatmap_size[1]


def encode(kpts_crop: np.ndarray, crop_size: tuple[int, int], heatmap_size: tuple[int, int],
           sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian targets for (K, 3) crop-frame points ``x, y, v``.

    ``sigma`` is in heatmap pixels. Returns heatmaps (K, Hh, Wh) float32 with peak 1 and weights (K,) float32:
    1 for a labelled point (v > 0) inside the crop, 0 otherwise (its heatmap is all zero).
    """
    kpts = np.asarray(kpts_crop, dtype=np.float64).reshape(-1, 3)
    wh, hh = heatmap_size
    sx, sy = stride_of(crop_size, heatmap_size)
    xs = np.arange(wh, dtype=np.float64) + 0.5
    ys = np.arange(hh, dtype=np.float64) + 0.5
    heatmaps = np.zeros((len(kpts), hh, wh), dtype=np.float32)
    weights = np.zeros(len(kpts), dtype=np.float32)
    for k, (x, y, v) in enumerate(kpts):
        if v <= 0 or not (0 <= x < crop_size[0] and 0 <= y < crop_size[1]):
            continue
        mx, my = x / sx, y / sy
        gx = np.exp(-((xs - mx) ** 2) / (2 * sigma ** 2))
        gy = np.exp(-((ys - my) ** 2) / (2 * sigma ** 2))
        heatmaps[k] = np.outer(gy, gx).astype(np.float32)
        weights[k] = 1.0
    return heatmaps, weights


def _smooth(heatmaps: np.ndarray, sigma: float) -> np.ndarray:
    """DARK's modulation: blur each map with the training Gaussian, rescale to its old maximum.

    Outside the map counts as zero (as in mmpose): that biases peaks within ~3 sigma of the border slightly inward
    (at most ~0.3 heatmap px for sigma 2, measured), less than replicating the border would (~0.7 px).
    """
    out = np.empty_like(heatmaps, dtype=np.float64)
    ksize = int(2 * round(3 * sigma) + 1)
    for idx in np.ndindex(heatmaps.shape[:-2]):
        h = heatmaps[idx].astype(np.float64)
        peak = h.max()
        b = cv2.GaussianBlur(h, (ksize, ksize), sigma, borderType=cv2.BORDER_CONSTANT)
        out[idx] = b * (peak / b.max()) if b.max() > 0 else b
    return out


def decode(heatmaps: np.ndarray, crop_size: tuple[int, int], sigma: float = 2.0,
           refine: bool = True, blur: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of (N, K, Hh, Wh) heatmaps -> crop-frame points (N, K, 2) and scores (N, K) (the heatmap maximum).

    ``refine`` applies the DARK Taylor step (clamped to one heatmap pixel); otherwise the argmax pixel centre.
    ``blur`` smooths first (robust on network outputs); without it an exact Gaussian decodes exactly everywhere.
    """
    hm = np.asarray(heatmaps, dtype=np.float64)
    n, k, hh, wh = hm.shape
    flat = hm.reshape(n, k, -1)
    idx = flat.argmax(axis=2)
    scores = flat.max(axis=2)
    py, px = np.divmod(idx, wh)
    fx = px.astype(np.float64) + 0.5
    fy = py.astype(np.float64) + 0.5
    if refine:
        log = np.log(np.maximum(_smooth(hm, sigma) if blur else hm, 1e-10))
        inner = (px > 0) & (px < wh - 1) & (py > 0) & (py < hh - 1)
        ni, ki = np.nonzero(inner)
        x, y = px[ni, ki], py[ni, ki]
        L = log[ni, ki]  # noqa: N806  (the log-heatmap, as in the paper)

        def at(dy: int, dx: int) -> np.ndarray:
            return L[np.arange(len(ni)), y + dy, x + dx]

        c = at(0, 0)
        dx = 0.5 * (at(0, 1) - at(0, -1))
        dy = 0.5 * (at(1, 0) - at(-1, 0))
        dxx = at(0, 1) - 2 * c + at(0, -1)
        dyy = at(1, 0) - 2 * c + at(-1, 0)
        dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = dxx * dyy - dxy ** 2
        ok = np.abs(det) > 1e-12
        safe = np.where(ok, det, 1.0)
        ox = np.where(ok, -(dyy * dx - dxy * dy) / safe, 0.0)
        oy = np.where(ok, -(dxx * dy - dxy * dx) / safe, 0.0)
        fx[ni, ki] += np.clip(ox, -1.0, 1.0)
        fy[ni, ki] += np.clip(oy, -1.0, 1.0)
    sx, sy = stride_of(crop_size, (wh, hh))
    return np.stack([fx * sx, fy * sy], axis=-1), scores
