"""A class-agnostic box around the one item of a product photo, from colour alone (no model).

Product photos show one item on a background that reaches the photo's border (a bed, a floor, a wall). The
background's colour is estimated from a frame of border pixels; pixels far from every border colour cluster are
foreground; the box is the extent of the largest foreground blob after closing small gaps. It fails on items that
touch most of the border or share its colour, and then falls back to the photo minus a margin.
"""
from __future__ import annotations

import cv2
import numpy as np

WORK_SIDE = 160  # the photo is analysed at this longer side: enough for a box, fast


def foreground_box(image: np.ndarray, border: float = 0.04, clusters: int = 4,
                   margin: float = 0.05) -> tuple[np.ndarray, bool]:
    """``(box_xyxy, found)`` for an RGB uint8 image, box in image pixels. ``found`` False: the fallback box
    (the image minus ``margin`` on each side) because no plausible foreground blob was found."""
    h, w = image.shape[:2]
    f = WORK_SIDE / max(h, w)
    small = cv2.resize(image, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    sh, sw = lab.shape[:2]
    b = max(2, round(border * max(sh, sw)))
    frame = np.concatenate([lab[:b].reshape(-1, 3), lab[-b:].reshape(-1, 3),
                            lab[:, :b].reshape(-1, 3), lab[:, -b:].reshape(-1, 3)])
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    cv2.setRNGSeed(0)  # k-means++ seeding: the same photo gives the same box
    _, _, centres = cv2.kmeans(frame, clusters, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    # distance of every pixel to its nearest background colour, against the spread of the border itself
    d = np.min(np.linalg.norm(lab.reshape(-1, 1, 3) - centres[None], axis=2), axis=1).reshape(sh, sw)
    d_frame = np.min(np.linalg.norm(frame[:, None] - centres[None], axis=2), axis=1)
    threshold = max(12.0, float(np.percentile(d_frame, 95)) * 1.5)
    mask = (d > threshold).astype(np.uint8)
    k = max(3, round(0.03 * max(sh, sw)) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    fallback = np.array([margin * w, margin * h, (1 - margin) * w, (1 - margin) * h])
    if n <= 1:
        return fallback, False
    i = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, bw, bh, area = stats[i]
    if area < 0.02 * sh * sw or (bw >= sw - 1 and bh >= sh - 1 and area > 0.9 * sh * sw):
        return fallback, False  # a speck, or "everything is foreground": the border model failed
    box = np.array([x, y, x + bw, y + bh], dtype=np.float64) / f
    return np.clip(box, 0, [w, h, w, h]), True
