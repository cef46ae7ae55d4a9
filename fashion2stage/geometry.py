"""Boxes and the padded crop.

Frames: "image" is pixels of the original image (after EXIF orientation), "crop" is pixels of the fixed-size crop
a head sees. Both use pixel-corner coordinates: pixel i covers [i, i+1), so a W-wide image spans [0, W].
Boxes are ``[x1, y1, x2, y2]``.

The crop guarantee: the crop window is the box grown by ``spec.padding`` and widened to the crop's
aspect ratio, never clipped to the image (outside is ``spec.fill``), and carries its exact inverse transform.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from fashion2stage.jsonspec import rule

MAX_CROP_SIDE = 2048  # pixels; a crop model's input is a few hundred


def xywh_to_xyxy(box_xywh) -> np.ndarray:
    x, y, w, h = np.asarray(box_xywh, dtype=np.float64)
    return np.array([x, y, x + w, y + h])


def xyxy_to_xywh(box_xyxy) -> np.ndarray:
    x1, y1, x2, y2 = np.asarray(box_xyxy, dtype=np.float64)
    return np.array([x1, y1, x2 - x1, y2 - y1])


def box_iou(boxes_a_xyxy, boxes_b_xyxy) -> np.ndarray:
    """IoU matrix (N, M) between two sets of boxes."""
    a = np.asarray(boxes_a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b_xyxy, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def cover_points(box_xyxy, points_xy, margin: float = 0.0) -> np.ndarray:
    """The smallest box containing ``box_xyxy`` and every point of ``points_xy`` (N, 2), grown by ``margin`` px."""
    b = np.asarray(box_xyxy, dtype=np.float64).copy()
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    if len(pts):
        b[:2] = np.minimum(b[:2], pts.min(axis=0) - margin)
        b[2:] = np.maximum(b[2:], pts.max(axis=0) + margin)
    return b


@dataclass(frozen=True)
class CropSpec:
    """How a head wants its crops: output size in pixels, padding factor, fill value outside the image."""

    width: int = field(default=224, metadata=rule(gt=0, le=MAX_CROP_SIDE))
    height: int = field(default=224, metadata=rule(gt=0, le=MAX_CROP_SIDE))
    # the window side is the box side times this (mmpose's top-down default); under 1 it would cut the garment
    padding: float = field(default=1.25, metadata=rule(ge=1.0, le=10.0))
    fill: int = field(default=128, metadata=rule(ge=0, le=255))  # mid-grey: zero after (x - 0.5) / 0.5

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "padding": self.padding, "fill": self.fill}


@dataclass(frozen=True)
class CropTransform:
    """Maps crop pixels to image pixels: ``image = origin + crop * scale`` (same scale on both axes)."""

    x0: float
    y0: float
    scale: float  # image pixels per crop pixel

    def to_image(self, points_crop) -> np.ndarray:
        """(..., 2+) crop-frame points -> image frame; extra columns (scores, visibility) pass through."""
        p = np.array(points_crop, dtype=np.float64, copy=True)
        p[..., 0] = self.x0 + p[..., 0] * self.scale
        p[..., 1] = self.y0 + p[..., 1] * self.scale
        return p

    def to_crop(self, points_image) -> np.ndarray:
        p = np.array(points_image, dtype=np.float64, copy=True)
        p[..., 0] = (p[..., 0] - self.x0) / self.scale
        p[..., 1] = (p[..., 1] - self.y0) / self.scale
        return p

    def box_to_crop(self, box_image_xyxy) -> np.ndarray:
        return self.to_crop(np.asarray(box_image_xyxy, dtype=np.float64).reshape(2, 2)).reshape(4)

    def crop_to_image_matrix(self) -> np.ndarray:
        """2x3 affine from crop pixel *indices* to image pixel indices (pixel centres at integers, as cv2 wants)."""
        s = self.scale
        return np.array([[s, 0.0, self.x0 + 0.5 * s - 0.5],
                         [0.0, s, self.y0 + 0.5 * s - 0.5]])


def crop_window(box_xyxy, spec: CropSpec) -> np.ndarray:
    """The image-frame window ``[x1, y1, x2, y2]`` a crop of ``box_xyxy`` covers: padded, at the spec's aspect ratio."""
    x1, y1, x2, y2 = np.asarray(box_xyxy, dtype=np.float64)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w = max(x2 - x1, 1.0) * spec.padding
    h = max(y2 - y1, 1.0) * spec.padding
    aspect = spec.width / spec.height
    if w / h > aspect:
        h = w / aspect
    else:
        w = h * aspect
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def crop_transform(box_xyxy, spec: CropSpec) -> CropTransform:
    """The crop->image transform of the crop of ``box_xyxy``, without touching any pixels."""
    wx1, wy1, wx2, _ = crop_window(box_xyxy, spec)
    return CropTransform(float(wx1), float(wy1), float((wx2 - wx1) / spec.width))


def crop(image: np.ndarray, box_xyxy, spec: CropSpec) -> tuple[np.ndarray, CropTransform]:
    """Cut the padded crop of ``box_xyxy`` out of ``image`` (H, W, C uint8).

    Returns the crop (spec.height, spec.width, C) and its crop->image transform. Never clipped: any part of the
    window outside the image is ``spec.fill``.
    """
    t = crop_transform(box_xyxy, spec)
    m = t.crop_to_image_matrix()
    source = image
    if t.scale > 2.0:
        # Large downscales alias under bilinear sampling: shrink with INTER_AREA first, same frame.
        f = int(t.scale // 1.5)
        h, w = image.shape[:2]
        source = cv2.resize(image, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
        fx, fy = w / source.shape[1], h / source.shape[0]  # rounding makes these differ slightly from f
        # image index i <-> shrunk index j: (i + 0.5) = (j + 0.5) * fx
        m = np.array([[m[0, 0] / fx, 0.0, (m[0, 2] + 0.5) / fx - 0.5],
                      [0.0, m[1, 1] / fy, (m[1, 2] + 0.5) / fy - 0.5]])
    channels = 1 if source.ndim == 2 else source.shape[2]
    out = cv2.warpAffine(source, m, (spec.width, spec.height),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(spec.fill,) * max(channels, 1))
    return out, t


def pad_to_aspect(image: np.ndarray, max_aspect: float, fill: int = 128) -> np.ndarray:
    """``image`` (H, W, C) with ``fill`` added below or right of it until its longer side is at most ``max_aspect``
    times its shorter side; the image's own pixels keep their coordinates. Returns ``image`` itself when it fits."""
    h, w = image.shape[:2]
    short = max(1, int(np.ceil(max(h, w) / max_aspect)))
    if min(h, w) >= short:
        return image
    out = np.full((max(h, short), max(w, short)) + image.shape[2:], fill, dtype=image.dtype)
    out[:h, :w] = image
    return out
