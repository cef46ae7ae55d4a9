"""Keypoint metrics: FashionAI normalised error (NE) and PCK (docs/METRICS.md).

Arrays are in one frame (image pixels): ``pred_xy`` (N, K, 2) with NaN where a point was not predicted, ``gt``
(N, K, 3) x, y, v in the COCO convention (2 visible, 1 occluded, 0 absent), ``norm`` (N,) pixels.

Which points count: only ground-truth points with ``v == 2`` (FashionAI scores its "visible" points; its ``v = 1``
is our 2). A point that is visible in the truth but has no prediction (NaN) still counts: its distance is taken
as the normaliser itself, i.e. a 100 % error for that point (and never a PCK hit). FashionAI's scorer was never
published and its CSV had a coordinate for every point, so there is no official rule to copy; a fixed 100 % is
the choice that does not depend on where the garment sits in the image (taking the missing point as (0, 0)
would punish a garment in the bottom-right corner more than one in the top-left).
"""
from __future__ import annotations

import numpy as np

from fashion2stage.labels import LabelSet

BOX_DIAGONAL = "box_diagonal"


def relative_errors(pred_xy, gt, norm) -> np.ndarray:
    """Per point distance / normaliser (N, K); NaN where the point does not count (gt ``v != 2``), 1.0 where it
    counts but was not predicted."""
    pred = np.asarray(pred_xy, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    s = np.asarray(norm, dtype=np.float64).reshape(-1)
    if pred.shape[:2] != g.shape[:2] or pred.shape[2:] != (2,) or g.shape[2:] != (3,) or len(s) != len(g):
        raise ValueError(f"shapes: pred {pred.shape} (N,K,2), gt {g.shape} (N,K,3), norm {s.shape} (N,)")
    if not np.all(np.isfinite(s) & (s > 0)):
        raise ValueError("every normaliser must be a positive finite distance")
    d = np.linalg.norm(pred - g[..., :2], axis=-1) / s[:, None]
    d = np.where(np.isnan(d), 1.0, d)
    return np.where(g[..., 2] == 2, d, np.nan)


def normalised_error(pred_xy, gt, norm) -> float:
    """FashionAI NE in percent: mean over counted points of d / s (module doc); NaN when no point counts."""
    r = relative_errors(pred_xy, gt, norm)
    return float(np.nanmean(r) * 100) if np.isfinite(r).any() else float("nan")


def pck(pred_xy, gt, norm, alpha: float = 0.1) -> float:
    """Fraction (0..1) of counted points (gt ``v == 2``) predicted within ``alpha * norm``; missing ones miss."""
    r = relative_errors(pred_xy, gt, norm)
    counted = np.isfinite(r)
    return float((r[counted] <= alpha).mean()) if counted.any() else float("nan")


def ne_normaliser(gt, types: list[str], boxes_xyxy, labels: LabelSet) -> tuple[np.ndarray, list[str]]:
    """The NE normaliser per sample, (N,) pixels, and where it came from.

    The label set's pair for the garment type (FashionAI: armpits for blouse/outwear/dress, waistband ends for
    skirt/trousers) when both points are labelled (``v > 0``) and apart; otherwise the diagonal of the
    ground-truth box ``boxes_xyxy`` (N, 4). The kind is ``"armpit_left-armpit_right"``-style or ``"box_diagonal"``.
    """
    g = np.asarray(gt, dtype=np.float64)
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    index = {n: i for i, n in enumerate(labels.keypoints)}
    norms, kinds = np.zeros(len(g)), []
    for n, t in enumerate(types):
        pair = labels.ne_normaliser.get(t)
        if pair and all(p in index for p in pair):
            a, b = g[n, index[pair[0]]], g[n, index[pair[1]]]
            dist = float(np.linalg.norm(a[:2] - b[:2]))
            if a[2] > 0 and b[2] > 0 and dist > 0:
                norms[n] = dist
                kinds.append(f"{pair[0]}-{pair[1]}")
                continue
        norms[n] = float(np.linalg.norm(boxes[n, 2:] - boxes[n, :2]))
        kinds.append(BOX_DIAGONAL)
    return norms, kinds


def keypoint_report(pred_xy, gt, types: list[str], boxes_xyxy, labels: LabelSet, alpha: float = 0.1) -> dict:
    """NE (percent) overall, per garment type and per keypoint name; PCK@alpha; how each sample was normalised.

    ``boxes_xyxy`` are the ground-truth boxes (the normaliser fallback). Entries with no counted point are NaN.
    """
    norm, kinds = ne_normaliser(gt, types, boxes_xyxy, labels)
    r = relative_errors(pred_xy, gt, norm) if len(types) else np.zeros((0, len(labels.keypoints)))

    def ne(x: np.ndarray) -> float:
        return float(np.nanmean(x) * 100) if np.isfinite(x).any() else float("nan")

    counted = np.isfinite(r)
    types_arr = np.asarray(types, dtype=object)
    return {
        "n_samples": len(types), "n_points": int(counted.sum()),
        "ne": ne(r),
        "ne_per_type": {t: ne(r[types_arr == t]) for t in dict.fromkeys(types)},
        "ne_per_keypoint": {name: ne(r[:, k]) for k, name in enumerate(labels.keypoints) if counted[:, k].any()},
        f"pck@{alpha:g}": float((r[counted] <= alpha).mean()) if counted.any() else float("nan"),
        "normaliser": {k: kinds.count(k) for k in dict.fromkeys(kinds)},
    }
