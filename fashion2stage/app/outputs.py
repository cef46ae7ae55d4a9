"""The optional outputs of ``predict``, built from the ImagePredictions: COCO detection results, FashionAI attribute
submission CSV, FashionAI keypoint CSV, overlay pictures (``ImagePrediction.plot``).

The ImagePredictions whose ``to_json()`` lines were just written are the only input, so these files always agree
with ``predictions.jsonl``. Rows are small and kept until ``close()``, which writes each file atomically; overlays are
written as their batch passes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fashion2stage.app.pipeline import Pipeline
from fashion2stage.formats.coco import write_coco_results
from fashion2stage.formats.fashionai import write_attribute_submission, write_keypoint_csv
from fashion2stage.geometry import xyxy_to_xywh
from fashion2stage.labels import LabelSet
from fashion2stage.records import Garment, ImageRecord
from fashion2stage.results import ImagePrediction


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

    @classmethod
    def for_pipeline(cls, out_dir: Path, pipeline: Pipeline, coco: bool = False, fashionai_attributes: bool = False,
                     fashionai_keypoints: bool = False, overlays: bool = False) -> PredictionWriters:
        """The writers asked for, with the label sets of ``pipeline``'s models."""
        types = pipeline.detector.labels.garment_types if pipeline.detector is not None else []
        kp_labels = pipeline.keypoints.labels if pipeline.keypoints is not None else None
        return cls(out_dir, types, kp_labels, coco=coco, fashionai_attributes=fashionai_attributes,
                   fashionai_keypoints=fashionai_keypoints, overlays=overlays)

    def __call__(self, predictions: list[ImagePrediction]) -> None:
        for pred in predictions:
            self.n += 1
            if pred.error is not None:
                continue
            pred = pred.as_written()  # the numbers of its line, so that every file agrees with predictions.jsonl
            if self.coco is not None:
                self._coco(pred)
            if self.attr_rows is not None:
                self.attr_rows.extend((pred.image, k, a.probs) for k, a in pred.attributes.items())
            if self.kpt_records is not None:
                self.kpt_records.append(self._keypoint_record(pred))
            if self.overlays and pred.orig_img is not None:
                pred.save(self.out / "overlays" / Path(pred.image).with_suffix(".jpg"))

    def _coco(self, pred: ImagePrediction) -> None:
        for g in pred.garments:
            if g.type not in self.garment_types:
                continue
            self.coco.append({"image_id": self.n, "file_name": pred.image,
                              "category_id": self.garment_types.index(g.type) + 1,
                              "bbox": [round(float(v), 2) for v in xyxy_to_xywh(g.box)], "score": g.score})

    def _keypoint_record(self, pred: ImagePrediction) -> ImageRecord:
        names = self.keypoint_labels.keypoints
        garments = []
        for g in pred.garments:
            k = np.zeros((len(names), 3))
            for i, n in enumerate(names):
                if n in g.keypoints:
                    k[i] = [*g.keypoints[n][:2], 2]  # predicted points are written as visible
            garments.append(Garment(type=g.type, box_xyxy=np.asarray(g.box, float), keypoints=k, score=g.score))
        return ImageRecord(file=pred.image, root=Path("."), width=pred.width, height=pred.height, garments=garments)

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
