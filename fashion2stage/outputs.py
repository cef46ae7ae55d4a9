"""The optional outputs of ``predict``, built from the JSONL records: COCO detection results, FashionAI attribute
submission CSV, FashionAI keypoint CSV, overlay pictures.

The records are the only input (plus the decoded image for overlays), so these files always agree with
``predictions.jsonl``. Rows are small and kept until ``close()``, which writes each file atomically; overlays are
written as their batch passes.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fashion2stage.formats.coco import write_coco_results
from fashion2stage.formats.fashionai import write_attribute_submission, write_keypoint_csv
from fashion2stage.geometry import xyxy_to_xywh
from fashion2stage.labels import LabelSet
from fashion2stage.records import Garment, ImageRecord

# BGR-free: colours are RGB, the overlay is drawn on the RGB image and converted once when saved
_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


class PredictionWriters:
    def __init__(self, out_dir: Path, garment_types: list[str], keypoint_labels: LabelSet | None,
                 coco: bool = False, fashionai_attributes: bool = False, fashionai_keypoints: bool = False,
                 overlays: bool = False):
        self.out = Path(out_dir)
        self.garment_types = garment_types
        self.keypoint_labels = keypoint_labels
        self.coco = [] if coco else None
        self.attr_rows = [] if fashionai_attributes else None
        self.kpt_records = [] if fashionai_keypoints and keypoint_labels is not None else None
        self.overlays = overlays
        self.n = 0  # images seen: the COCO image_id of an image is its 1-based position in the input order

    def __call__(self, records: list[dict], images: list[np.ndarray | None]) -> None:
        for rec, img in zip(records, images):
            self.n += 1
            if "error" in rec:
                continue
            if self.coco is not None:
                self._coco(rec)
            if self.attr_rows is not None:
                self.attr_rows.extend((rec["image"], k, a["probs"]) for k, a in rec["attributes"].items())
            if self.kpt_records is not None:
                self.kpt_records.append(self._keypoint_record(rec))
            if self.overlays and img is not None:
                path = self.out / "overlays" / Path(rec["image"]).with_suffix(".jpg")
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), cv2.cvtColor(draw_overlay(img, rec), cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 90])

    def _coco(self, rec: dict) -> None:
        for g in rec["garments"]:
            if g["type"] not in self.garment_types:
                continue
            self.coco.append({"image_id": self.n, "file_name": rec["image"],
                              "category_id": self.garment_types.index(g["type"]) + 1,
                              "bbox": [round(float(v), 2) for v in xyxy_to_xywh(g["box"])], "score": g["score"]})

    def _keypoint_record(self, rec: dict) -> ImageRecord:
        names = self.keypoint_labels.keypoints
        garments = []
        for g in rec["garments"]:
            k = np.zeros((len(names), 3))
            for i, n in enumerate(names):
                if n in g["keypoints"]:
                    k[i] = [*g["keypoints"][n][:2], 2]  # predicted points are written as visible
            garments.append(Garment(type=g["type"], box_xyxy=np.asarray(g["box"], float), keypoints=k,
                                    score=g["score"]))
        return ImageRecord(file=rec["image"], root=Path("."), width=rec["width"], height=rec["height"],
                           garments=garments)

    def close(self) -> list[Path]:
        written = []
        if self.coco is not None:
            write_coco_results(self.out / "detections_coco.json", self.coco)
            written.append(self.out / "detections_coco.json")
        if self.attr_rows is not None:
            write_attribute_submission(self.out / "fashionai_attributes.csv", self.attr_rows)
            written.append(self.out / "fashionai_attributes.csv")
        if self.kpt_records is not None:
            write_keypoint_csv(self.out / "fashionai_keypoints.csv", self.kpt_records, self.keypoint_labels)
            written.append(self.out / "fashionai_keypoints.csv")
        if self.overlays:
            written.append(self.out / "overlays")
        return written


def draw_overlay(image: np.ndarray, rec: dict, top_attributes: int = 3) -> np.ndarray:
    """A copy of ``image`` (RGB) with each garment's box, type and score, its most confident attribute values and
    its landmarks drawn, for people to look at."""
    img = image.copy()
    h, w = img.shape[:2]
    thick = max(1, round(max(h, w) / 400))
    font = 0.4 * thick + 0.1
    for n, g in enumerate(rec["garments"]):
        colour = _PALETTE[n % len(_PALETTE)]
        x1, y1, x2, y2 = (int(round(v)) for v in g["box"])
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, thick)
        attrs = sorted(g["attributes"].items(), key=lambda kv: -kv[1]["score"])[:top_attributes]
        lines = [f"{g['type']} {g['score']:.2f}"] + [f"{k}: {a['value']}" for k, a in attrs]
        y = max(y1, 0) + 4
        for text in lines:
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
            x = min(max(x1, 0), max(w - tw - 4, 0))
            cv2.rectangle(img, (x, y), (x + tw + 4, y + th + 6), colour, -1)
            cv2.putText(img, text, (x + 2, y + th + 2), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 1, cv2.LINE_AA)
            y += th + 6
        for name, (px, py, _) in g["keypoints"].items():
            cv2.circle(img, (int(round(px)), int(round(py))), 2 * thick + 1, colour, -1, cv2.LINE_AA)
            cv2.circle(img, (int(round(px)), int(round(py))), 2 * thick + 1, (255, 255, 255), 1, cv2.LINE_AA)
    return img
