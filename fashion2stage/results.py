"""What the pipeline returns for one image: typed results whose ``to_json()`` is one line of ``predictions.jsonl``
(``to_dict()`` the same line as a dict; ``from_json`` / ``from_dict`` read them back).

Frames and units (docs/OUTPUT.md is the full contract): boxes are ``[x1, y1, x2, y2]`` and keypoints ``(x, y,
score)`` in pixels of the original image after EXIF orientation; scores and probabilities are in [0, 1]; ``probs``
follow the value order of the label set saved in the attribute run folder, and ``names`` gives those values.

The objects hold the models' numbers as they are; they are rounded in one place, the writer side (``to_dict``, hence
``to_json``), to the precision of the JSON line (boxes and keypoint x, y to 0.01 px, scores and probabilities to 4
decimals). Every other file written from a prediction (COCO, FashionAI CSVs) is written from ``as_written()``, the
numbers of its line, so that they agree with the line exactly, and ``from_json(line).to_json() == line``. ``value``
is the argmax of the probabilities before rounding, so after rounding it may tie with another value's probability.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fashion2stage.geometry import CropSpec, crop


@dataclass
class AttributePrediction:
    """One attribute key's answer. ``value`` is the most probable value (argmax of ``probs`` before rounding);
    ``names`` are the values ``probs`` are the probabilities of, in the same order (empty when read from a line
    written before names were part of it).

    ``garment`` is meaningful for image-level answers only: the index in ``ImagePrediction.garments`` of the garment
    that answered, or None when the whole image answered (no garment of a type carrying the key was found)."""

    value: str
    score: float
    probs: list[float]
    garment: int | None = None
    names: list[str] = field(default_factory=list)

    def by_name(self) -> dict[str, float]:
        """``{value: probability}``, in the label set's value order."""
        return dict(zip(self.names, self.probs))

    def to_dict(self, image_level: bool = False) -> dict:
        d = {"value": self.value, "score": round(float(self.score), 4),
             "probs": [round(float(p), 4) for p in self.probs], "names": list(self.names)}
        if image_level:
            d["garment"] = self.garment
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AttributePrediction:
        return cls(value=d["value"], score=float(d["score"]), probs=[float(p) for p in d["probs"]],
                   garment=d.get("garment"), names=[str(n) for n in d.get("names", [])])

    @classmethod
    def from_probs(cls, values: list[str], probs, garment: int | None = None) -> AttributePrediction:
        """The answer for probabilities ``probs`` (V,) over ``values`` (the label set's value order)."""
        p = np.asarray(probs, dtype=np.float64)
        k = int(np.argmax(p))
        return cls(value=values[k], score=float(p[k]), probs=p.tolist(), garment=garment, names=list(values))


@dataclass
class GarmentPrediction:
    """One detected garment: its type and detector score, its box, the attributes its type carries, its landmarks
    (only the keypoints of its type's subset; each ``(x, y, score)``, image pixels).

    The one garment record of prediction: a detector returns it (type, score, box) and the pipeline fills it stage by
    stage (fashion2stage/app/pipeline.py). The last four fields are the attribute model's readings of the garment's
    crop, which the pipeline decides with (the garment check, the photo kind, the single item's type); they are not
    part of the line (never serialised, not compared)."""

    type: str
    score: float
    box: list[float]  # [x1, y1, x2, y2], image pixels
    attributes: dict[str, AttributePrediction] = field(default_factory=dict)
    keypoints: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    # key -> (V,) probabilities of every attribute key on the crop, before the keys are narrowed to the type's
    probs: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    p_garment: float | None = field(default=None, repr=False, compare=False)  # the garment check: 1 - p(none)
    item_type_probs: np.ndarray | None = field(default=None, repr=False, compare=False)  # the item-type head's
    p_single: float | None = field(default=None, repr=False, compare=False)  # the photo-kind head's p(single item)
    # where the keypoint model shares the attribute model's backbone (classifiers/crop_models.py): the heatmaps of the
    # attribute pass over this garment's crop, and that crop's transform (geometry.CropTransform), until decoded
    heatmaps: np.ndarray | None = field(default=None, repr=False, compare=False)
    crop_transform: object | None = field(default=None, repr=False, compare=False)

    @property
    def box_xyxy(self) -> np.ndarray:
        """``box`` as a (4,) float64 array, the name every internal box has (records.Garment, geometry)."""
        return np.asarray(self.box, dtype=np.float64)

    def to_dict(self) -> dict:
        return {"type": self.type, "score": round(float(self.score), 4),
                "box": [round(float(v), 2) for v in self.box],
                "attributes": {k: a.to_dict() for k, a in self.attributes.items()},
                "keypoints": {n: [round(float(x), 2), round(float(y), 2), round(float(s), 4)]
                              for n, (x, y, s) in self.keypoints.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> GarmentPrediction:
        return cls(type=d["type"], score=float(d["score"]), box=[float(v) for v in d["box"]],
                   attributes={k: AttributePrediction.from_dict(a) for k, a in d.get("attributes", {}).items()},
                   keypoints={n: (float(p[0]), float(p[1]), float(p[2])) for n, p in d.get("keypoints", {}).items()})


@dataclass
class PhotoKind:
    """Whether the photo was read as one item and no person (``single_item``: the pipeline's single-item rule, one
    garment) or not (``multi_item``: every garment). ``p_single`` is the attribute model's photo-kind head's
    probability of a single-item photo (None without such a head); ``by`` says what decided: ``model`` (that
    probability against the head's threshold), ``flag`` (--single-item / --multi-item) or ``default`` (no head, no
    flag: multi_item)."""

    value: str
    p_single: float | None = None
    by: str = "default"

    def to_dict(self) -> dict:
        return {"value": self.value, "p_single": None if self.p_single is None else round(float(self.p_single), 4),
                "by": self.by}

    @classmethod
    def from_dict(cls, d: dict) -> PhotoKind:
        return cls(value=d["value"], p_single=None if d.get("p_single") is None else float(d["p_single"]),
                   by=d.get("by", "default"))


@dataclass
class ImagePrediction:
    """Everything read from one image. An unreadable image has ``error`` set (one line saying what is wrong),
    ``ok`` False, and empty but well-typed fields (no garments, no attributes, size 0 x 0), so code that reads
    predictions needs no special case for it. ``orig_img`` is the decoded (H, W, 3) uint8 RGB image the prediction
    was made on, kept for ``plot()``, ``save()`` and ``crops()``; it is never serialised (None after ``from_json``).
    For a photo larger than the models' ``max_side`` it is smaller than ``width`` x ``height``; ``plot()`` and
    ``crops()`` scale the boxes to it."""

    image: str
    width: int = 0
    height: int = 0
    garments: list[GarmentPrediction] = field(default_factory=list)
    attributes: dict[str, AttributePrediction] = field(default_factory=dict)  # image-level, one answer per key
    error: str | None = None
    photo_kind: PhotoKind | None = None  # how the photo was read (one item or several); None: not by the pipeline
    orig_img: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the image was read (``error`` is None)."""
        return self.error is None

    def to_dict(self) -> dict:
        """The ``predictions.jsonl`` line as a dict (key order is the contract's)."""
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        line = {"image": self.image, "width": int(self.width), "height": int(self.height),
                "garments": [g.to_dict() for g in self.garments],
                "attributes": {k: a.to_dict(image_level=True) for k, a in self.attributes.items()}}
        if self.photo_kind is not None:
            line["photo_kind"] = self.photo_kind.to_dict()
        return line

    def to_json(self) -> str:
        """The ``predictions.jsonl`` line, exactly as ``predict`` writes it (compact JSON, no newline)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> ImagePrediction:
        """Parse one ``predictions.jsonl`` line already decoded from JSON."""
        if "error" in d:
            return cls(image=d["image"], error=str(d["error"]))
        return cls(image=d["image"], width=int(d["width"]), height=int(d["height"]),
                   garments=[GarmentPrediction.from_dict(g) for g in d.get("garments", [])],
                   attributes={k: AttributePrediction.from_dict(a) for k, a in d.get("attributes", {}).items()},
                   photo_kind=PhotoKind.from_dict(d["photo_kind"]) if d.get("photo_kind") is not None else None)

    @classmethod
    def from_json(cls, line: str | bytes) -> ImagePrediction:
        """Parse one ``predictions.jsonl`` line (the text; ``from_json(p.to_json()) == p``)."""
        if isinstance(line, dict):
            raise TypeError("ImagePrediction.from_json takes the line's text; use from_dict for a dict")
        return cls.from_dict(json.loads(line))

    def summary(self) -> list[dict]:
        """One flat dict per garment, in ``garments`` order: ``image``, ``garment`` (its index), ``type``,
        ``score``, ``x1``, ``y1``, ``x2``, ``y2`` (image pixels), then ``<key>`` (value) and ``<key>_score`` for each
        attribute the garment carries. Empty for an unreadable image or one without garments."""
        rows = []
        for n, g in enumerate(self.garments):
            row = {"image": self.image, "garment": n, "type": g.type, "score": g.score,
                   **dict(zip(("x1", "y1", "x2", "y2"), g.box))}
            for k, a in g.attributes.items():
                row[k], row[f"{k}_score"] = a.value, a.score
            rows.append(row)
        return rows

    def to_df(self):
        """``summary()`` as a pandas DataFrame: one row per garment (columns ``image`` .. ``y2`` even when empty)."""
        import pandas as pd  # noqa: PLC0415  (pandas only when asked)

        return pd.DataFrame(self.summary(), columns=None if self.garments else
                            ["image", "garment", "type", "score", "x1", "y1", "x2", "y2"])

    def as_written(self) -> ImagePrediction:
        """This prediction with the numbers of its line (``from_dict(to_dict())``: rounded as the line rounds them),
        ``orig_img`` kept: what every other output file is written from, so that it agrees with the line."""
        return replace(ImagePrediction.from_dict(self.to_dict()), orig_img=self.orig_img)

    def rescaled(self, width: int, height: int) -> ImagePrediction:
        """This prediction in the frame of the same photo at ``width`` x ``height`` pixels: boxes and landmarks
        scaled from ``self.width`` x ``self.height``; ``orig_img`` is kept."""
        sx, sy = width / self.width, height / self.height
        garments = [replace(g, box=[v * s for v, s in zip(g.box, (sx, sy, sx, sy))],
                            keypoints={n: (x * sx, y * sy, s) for n, (x, y, s) in g.keypoints.items()})
                    for g in self.garments]
        return replace(self, width=int(width), height=int(height), garments=garments)

    def _image(self) -> np.ndarray:
        if self.orig_img is None:
            raise ValueError(f"{self.image}: no image kept with this prediction "
                             + (f"({self.error})" if self.error else "(read back from JSON)"))
        return self.orig_img

    def _on(self, image: np.ndarray) -> ImagePrediction:
        """This prediction in ``image``'s frame: ``orig_img`` of a large photo is the smaller image the models saw."""
        h, w = image.shape[:2]
        return self if (w, h) == (self.width, self.height) else self.rescaled(w, h)

    def plot(self, image: np.ndarray | None = None) -> np.ndarray:
        """The overlay for people to look at, uint8 RGB: the photo with one numbered label per box (type, score) and
        the landmarks, and on its right a panel of each garment's attributes under the box's number and colour
        (fashion2stage.plotting; the canvas is wider than the photo, and taller when the panel needs it).
        ``image`` defaults to ``orig_img``."""
        from fashion2stage.plotting import draw_overlay  # noqa: PLC0415  (drawing only when asked)

        image = self._image() if image is None else image
        return draw_overlay(image, self._on(image))

    def save(self, path: str | Path, image: np.ndarray | None = None) -> Path:
        """Write ``plot()`` to ``path`` (its suffix picks the format: .jpg, .png, .webp ...), atomically."""
        return save_image(self.plot(image), path)

    def crops(self, spec: CropSpec | None = None) -> list[np.ndarray]:
        """One padded crop (spec.height, spec.width, 3) per garment, in ``garments`` order, cut from ``orig_img`` the
        way the heads see them (geometry.crop: box grown by ``spec.padding``, never clipped; default CropSpec())."""
        spec = spec or CropSpec()
        img = self._image()
        return [crop(img, g.box, spec)[0] for g in self._on(img).garments]

    def save_crops(self, folder: str | Path, spec: CropSpec | None = None, suffix: str = ".jpg") -> list[Path]:
        """Write ``crops(spec)`` into ``folder`` as ``<image stem>_<n>_<type><suffix>`` (n counts garments from 1,
        as the overlay numbers them); returns the paths, in ``garments`` order."""
        stem = re.sub(r"[^\w.-]+", "_", Path(self.image).stem).strip("_") or "image"  # "<image 0>" -> image_0
        return [save_image(c, Path(folder) / f"{stem}_{n + 1}_{g.type}{suffix}")
                for n, (g, c) in enumerate(zip(self.garments, self.crops(spec)))]


def save_image(rgb: np.ndarray, path: str | Path) -> Path:
    """Encode (H, W, 3) uint8 RGB in the format ``path``'s suffix names and write it atomically."""
    import io  # noqa: PLC0415

    from PIL import Image  # noqa: PLC0415

    from fashion2stage.io import write_bytes_atomic  # noqa: PLC0415

    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image suffix {path.suffix!r} (use .jpg, .png, .webp ...)")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    write_bytes_atomic(path, buf.getvalue())
    return path
