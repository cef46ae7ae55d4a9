"""Detector-matched box jitter: train the heads on ground-truth boxes that err the way the detector errs.

After ``detect-train`` the detector runs on the validation split; its detections are matched to the ground truth
(:func:`match_detections`, IoU >= 0.5, greedy by score as in COCO) and each match gives one error vector
(:func:`box_error`)::

    dx = (cx_pred - cx_gt) / w_gt      dy = (cy_pred - cy_gt) / h_gt
    log_w = log(w_pred / w_gt)         log_h = log(h_pred / h_gt)

:class:`BoxErrorStats` keeps those vectors (a few hundred floats) with the miss counts and is saved beside the
detector's weights as JSON. ``classify-train`` builds a :class:`JitterSampler` from that file and moves every
training box by a sampled error (:func:`apply_box_error` is the exact inverse of :func:`box_error`).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fashion2stage.errors import DataError
from fashion2stage.geometry import box_iou
from fashion2stage.io import write_json_atomic
from fashion2stage.records import ImageRecord

COMPONENTS = ("dx", "dy", "log_w", "log_h")
STATS_FORMAT = "fashion2stage.box_errors/1"
# The jitter when no detector statistics exist ("shift 0.1 and scale 0.25"): centre shift uniform
# within +-10 % of the box size, width and height each scaled by a factor uniform in log space over [0.75, 1.25].
DEFAULT_SHIFT = 0.1
DEFAULT_SCALE = 0.25
# Fewer matches than this and a resampled or fitted distribution says more about the sample than the detector.
MIN_MATCHES = 20


def match_detections(pred_boxes_xyxy, pred_scores, pred_types, gt_boxes_xyxy, gt_types,
                     iou_threshold: float = 0.5, class_aware: bool = True) -> list[tuple[int, int]]:
    """Match predictions to ground truth greedily, COCO-style; returns ``(pred_index, gt_index)`` pairs.

    Predictions are visited by descending score (ties keep input order); each takes the still-unmatched ground
    truth box (of the same type when ``class_aware``) with the highest IoU, if that IoU is ``>= iou_threshold``.
    Every ground-truth box is matched at most once. Boxes are ``(N, 4)`` / ``(M, 4)`` xyxy in the same frame.
    """
    pred = np.asarray(pred_boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt_boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if len(pred) == 0 or len(gt) == 0:
        return []
    iou = box_iou(pred, gt)
    if class_aware:
        same = np.asarray(list(pred_types), dtype=object)[:, None] == np.asarray(list(gt_types), dtype=object)[None, :]
        iou = np.where(same, iou, -1.0)
    order = np.argsort(-np.asarray(pred_scores, dtype=np.float64), kind="stable")
    taken = np.zeros(len(gt), dtype=bool)
    pairs = []
    for p in order:
        candidates = np.where(taken, -1.0, iou[p])
        g = int(np.argmax(candidates))
        if candidates[g] >= iou_threshold:
            taken[g] = True
            pairs.append((int(p), g))
    return pairs


def _centre_size(box_xyxy) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(box_xyxy, dtype=np.float64).reshape(4)
    return (b[:2] + b[2:]) / 2, b[2:] - b[:2]


def box_error(pred_box_xyxy, gt_box_xyxy) -> np.ndarray:
    """The error (4,) ``dx, dy, log_w, log_h`` of a predicted box relative to its ground-truth box (see module doc)."""
    c_p, s_p = _centre_size(pred_box_xyxy)
    c_g, s_g = _centre_size(gt_box_xyxy)
    if np.any(s_p <= 0) or np.any(s_g <= 0):
        raise ValueError(f"boxes must have positive size: pred {pred_box_xyxy}, gt {gt_box_xyxy}")
    return np.concatenate([(c_p - c_g) / s_g, np.log(s_p / s_g)])


def apply_box_error(box_xyxy, err) -> np.ndarray:
    """Move a box (4,) xyxy by an error ``dx, dy, log_w, log_h``: the exact inverse of :func:`box_error`."""
    c, s = _centre_size(box_xyxy)
    e = np.asarray(err, dtype=np.float64).reshape(4)
    c_new = c + e[:2] * s
    s_new = s * np.exp(e[2:])
    return np.concatenate([c_new - s_new / 2, c_new + s_new / 2])


@dataclass
class BoxErrorStats:
    """How a detector's boxes differ from the truth on one split.

    ``errors`` (n_matched, 4) are the matched error vectors (:data:`COMPONENTS`); ``per_type`` maps a garment type
    to ``{"n_gt": .., "n_matched": .., "n_pred": ..}``; ``n_pred`` counts all predictions (unmatched ones are false
    positives).
    """
    errors: np.ndarray
    n_gt: int
    n_matched: int
    iou_threshold: float = 0.5
    class_aware: bool = True
    n_pred: int = 0
    per_type: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self):
        self.errors = np.asarray(self.errors, dtype=np.float64).reshape(-1, 4)

    @property
    def miss_rate(self) -> float:
        """Fraction of ground-truth garments the detector did not find (0 when there were none)."""
        return 1.0 - self.n_matched / self.n_gt if self.n_gt else 0.0

    def summary(self) -> dict:
        """Per component: mean, std (ddof 1), quantiles 5/25/50/75/95 %; plus the correlation matrix and counts."""
        out: dict = {"n_gt": self.n_gt, "n_matched": self.n_matched, "n_pred": self.n_pred,
                     "miss_rate": self.miss_rate, "components": {}}
        e = self.errors
        for j, name in enumerate(COMPONENTS):
            if len(e) == 0:
                out["components"][name] = None
                continue
            q = np.quantile(e[:, j], [0.05, 0.25, 0.5, 0.75, 0.95])
            out["components"][name] = {
                "mean": float(e[:, j].mean()), "std": float(e[:, j].std(ddof=1)) if len(e) > 1 else 0.0,
                **{f"q{p:02d}": float(v) for p, v in zip((5, 25, 50, 75, 95), q)}}
        with np.errstate(invalid="ignore", divide="ignore"):  # a constant component has no correlation: null
            corr = np.corrcoef(e.T).round(4) if len(e) > 2 else None
        out["correlation"] = None if corr is None else [[None if np.isnan(v) else float(v) for v in row]
                                                         for row in corr]
        return out

    def to_dict(self) -> dict:
        return {"format": STATS_FORMAT, "components": list(COMPONENTS), "iou_threshold": self.iou_threshold,
                "class_aware": self.class_aware, "n_gt": self.n_gt, "n_matched": self.n_matched,
                "n_pred": self.n_pred, "per_type": self.per_type, "errors": self.errors.tolist(),
                "summary": self.summary()}

    def save(self, path: str | Path) -> None:
        """Atomic JSON with the raw errors (small: 4 floats per match) and the summary for people to read."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "BoxErrorStats":
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(path, f"cannot read box-error statistics: {e}") from e
        if not isinstance(d, dict) or d.get("format") != STATS_FORMAT:
            raise DataError(path, f"not a box-error file (expected \"format\": \"{STATS_FORMAT}\")")
        try:
            errors = np.asarray(d["errors"], dtype=np.float64).reshape(-1, 4) if d["errors"] else np.zeros((0, 4))
            stats = cls(errors=errors, n_gt=int(d["n_gt"]), n_matched=int(d["n_matched"]),
                        iou_threshold=float(d["iou_threshold"]), class_aware=bool(d.get("class_aware", True)),
                        n_pred=int(d.get("n_pred", 0)), per_type=dict(d.get("per_type", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(path, f"malformed box-error statistics: {type(e).__name__}: {e}") from e
        if len(stats.errors) != stats.n_matched or not np.all(np.isfinite(stats.errors)):
            raise DataError(path, f"{len(stats.errors)} error rows (finite: {np.isfinite(stats.errors).all()}) "
                                  f"for n_matched = {stats.n_matched}")
        if stats.n_matched > stats.n_gt:
            raise DataError(path, f"n_matched {stats.n_matched} exceeds n_gt {stats.n_gt}")
        return stats


def collect_box_errors(gt: list[ImageRecord], pred: list[ImageRecord], iou_threshold: float = 0.5,
                       class_aware: bool = True) -> BoxErrorStats:
    """Match each image's predicted garments (``score`` = detector confidence) to its ground truth.

    Records are paired by ``.file``; a ground-truth image with no prediction record counts as "nothing detected",
    predictions for images absent from ``gt`` are ignored.
    """
    by_file = {r.file: r for r in pred}
    errors, per_type = [], {}
    n_gt = n_pred = 0
    for g in gt:
        p = by_file.get(g.file)
        preds = p.garments if p is not None else []
        n_gt += len(g.garments)
        n_pred += len(preds)
        for x in g.garments:
            per_type.setdefault(x.type, {"n_gt": 0, "n_matched": 0, "n_pred": 0})["n_gt"] += 1
        for x in preds:
            per_type.setdefault(x.type, {"n_gt": 0, "n_matched": 0, "n_pred": 0})["n_pred"] += 1
        pairs = match_detections([x.box_xyxy for x in preds], [x.score for x in preds], [x.type for x in preds],
                                 [x.box_xyxy for x in g.garments], [x.type for x in g.garments],
                                 iou_threshold, class_aware)
        for pi, gi in pairs:
            errors.append(box_error(preds[pi].box_xyxy, g.garments[gi].box_xyxy))
            per_type[g.garments[gi].type]["n_matched"] += 1
    return BoxErrorStats(errors=np.array(errors).reshape(-1, 4), n_gt=n_gt, n_matched=len(errors),
                         iou_threshold=iou_threshold, class_aware=class_aware, n_pred=n_pred, per_type=per_type)


@dataclass
class JitterSampler:
    """Samples box errors ``(n, 4)`` (:data:`COMPONENTS`) to jitter ground-truth training boxes.

    Kinds:

    * ``"bootstrap"`` (from a detector's statistics, >= :data:`MIN_MATCHES` matches): a *smoothed, variance-
      corrected bootstrap* (Silverman 1986, 6.4.1). Resampling the recorded error vectors keeps what a fitted
      distribution would lose: the correlation between components (a box too wide is often shifted too) and the
      heavy tails (the odd detection that cuts off a sleeve), with no distribution family to guess. Plain resampling
      would repeat the same few hundred boxes every epoch, so a Gaussian kernel with covariance ``h^2 * Cov`` is
      added, ``h`` from Silverman's rule ``(4 / ((d + 2) n)) ** (1 / (d + 4))``; the result is shrunk towards the
      mean by ``1 / sqrt(1 + h^2)`` so the sampled mean and covariance equal the recorded ones (plain smoothing
      would inflate the variance by ``1 + h^2``)::

          e = mean + (e_i - mean + h * N(0, Cov)) / sqrt(1 + h^2),   i uniform over the records

    * ``"default"``: no detector statistics (or fewer than :data:`MIN_MATCHES` matches): ``dx, dy ~ U(-0.1, 0.1)``
      and ``log_w, log_h ~ U(log 0.75, log 1.25)`` independently ("shift 0.1 and scale 0.25").
    * ``"none"``: exact boxes (zero error), for the ablation.
    """
    kind: str
    errors: np.ndarray | None = None  # (M, 4) recorded errors, bootstrap only
    shift: float = DEFAULT_SHIFT
    scale: float = DEFAULT_SCALE
    bandwidth: float = 0.0  # Silverman's h, bootstrap only

    def __post_init__(self):
        if self.kind not in ("bootstrap", "default", "none"):
            raise ValueError(f"unknown jitter kind {self.kind!r} (bootstrap, default, none)")
        if self.kind == "bootstrap":
            self.errors = np.asarray(self.errors, dtype=np.float64).reshape(-1, 4)
            if len(self.errors) < 2:
                raise ValueError("a bootstrap jitter needs at least 2 recorded errors")
            self._mean = self.errors.mean(axis=0)
            # Cholesky of the covariance; a tiny ridge keeps it defined when a component never varied.
            cov = np.cov(self.errors.T) + 1e-12 * np.eye(4)
            self._chol = np.linalg.cholesky(cov)
            if not self.bandwidth:
                self.bandwidth = silverman_bandwidth(len(self.errors), 4)

    @classmethod
    def default(cls) -> "JitterSampler":
        return cls(kind="default")

    @classmethod
    def none(cls) -> "JitterSampler":
        return cls(kind="none")

    @classmethod
    def from_stats(cls, stats: BoxErrorStats, min_matches: int = MIN_MATCHES) -> "JitterSampler":
        """Bootstrap from a detector's recorded errors; the default jitter when it has fewer than ``min_matches``."""
        if len(stats.errors) < max(min_matches, 2):
            warnings.warn(f"the detector's box errors hold {len(stats.errors)} matched boxes (< {min_matches}): "
                          f"too few to resample, using the default jitter instead", stacklevel=2)
            return cls.default()
        return cls(kind="bootstrap", errors=stats.errors)

    @classmethod
    def from_file(cls, path: str | Path | None) -> "JitterSampler":
        """From a saved :class:`BoxErrorStats` file; the default jitter when ``path`` is None."""
        return cls.default() if path is None else cls.from_stats(BoxErrorStats.load(path))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` error vectors (n, 4): dx, dy (fractions of the box size), log_w, log_h."""
        if self.kind == "none":
            return np.zeros((n, 4))
        if self.kind == "default":
            shift = rng.uniform(-self.shift, self.shift, size=(n, 2))
            logs = rng.uniform(math.log(1 - self.scale), math.log(1 + self.scale), size=(n, 2))
            return np.concatenate([shift, logs], axis=1)
        h = self.bandwidth
        picked = self.errors[rng.integers(0, len(self.errors), size=n)]
        kernel = rng.standard_normal((n, 4)) @ self._chol.T
        return self._mean + (picked - self._mean + h * kernel) / math.sqrt(1 + h * h)

    def jitter(self, box_xyxy, rng: np.random.Generator) -> np.ndarray:
        """One jittered copy (4,) of a box xyxy, same frame. Not clipped: the crop pads what leaves the image."""
        return apply_box_error(box_xyxy, self.sample(rng, 1)[0])

    def to_dict(self) -> dict:
        d = {"kind": self.kind}
        if self.kind == "default":
            d.update(shift=self.shift, scale=self.scale)
        if self.kind == "bootstrap":
            d.update(bandwidth=self.bandwidth, errors=self.errors.tolist())
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "JitterSampler":
        kind = d["kind"]
        if kind == "bootstrap":
            return cls(kind=kind, errors=np.asarray(d["errors"], dtype=np.float64), bandwidth=float(d["bandwidth"]))
        if kind == "default":
            return cls(kind=kind, shift=float(d.get("shift", DEFAULT_SHIFT)),
                       scale=float(d.get("scale", DEFAULT_SCALE)))
        return cls(kind=kind)


def silverman_bandwidth(n: int, d: int) -> float:
    """Silverman's rule of thumb for a d-dimensional Gaussian kernel, in units of the data's standard deviation."""
    return (4.0 / ((d + 2) * n)) ** (1.0 / (d + 4))
