"""Overlay pictures of an ImagePrediction, for people to look at (``ImagePrediction.plot``, ``predict --overlays``)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from fashion2stage.results import ImagePrediction

# colours are RGB: the overlay is drawn on the RGB image and converted once when saved
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def draw_overlay(image: np.ndarray, pred: ImagePrediction, top_attributes: int = 3) -> np.ndarray:
    """A copy of ``image`` (RGB) with each garment's box, type and score, its most confident attribute values and
    its landmarks drawn."""
    img = image.copy()
    h, w = img.shape[:2]
    thick = max(1, round(max(h, w) / 400))
    font = 0.4 * thick + 0.1
    for n, g in enumerate(pred.garments):
        colour = PALETTE[n % len(PALETTE)]
        x1, y1, x2, y2 = (int(round(v)) for v in g.box)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, thick)
        attrs = sorted(g.attributes.items(), key=lambda kv: -kv[1].score)[:top_attributes]
        lines = [f"{g.type} {g.score:.2f}"] + [f"{k}: {a.value}" for k, a in attrs]
        y = max(y1, 0) + 4
        for text in lines:
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
            x = min(max(x1, 0), max(w - tw - 4, 0))
            cv2.rectangle(img, (x, y), (x + tw + 4, y + th + 6), colour, -1)
            cv2.putText(img, text, (x + 2, y + th + 2), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 1, cv2.LINE_AA)
            y += th + 6
        for px, py, _ in g.keypoints.values():
            cv2.circle(img, (int(round(px)), int(round(py))), 2 * thick + 1, colour, -1, cv2.LINE_AA)
            cv2.circle(img, (int(round(px)), int(round(py))), 2 * thick + 1, (255, 255, 255), 1, cv2.LINE_AA)
    return img
