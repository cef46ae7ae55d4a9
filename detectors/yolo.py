"""The YOLO backend's inference class (ultralytics, imported offline-safe through :mod:`detectors.offline`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fashion2stage.errors import DataError
from fashion2stage.labels import LabelSet
from fashion2stage.records import Garment


class YoloDetector:
    """``predict(images) -> list[list[Garment]]``; class id ``i`` is ``labels.garment_types[i]``."""

    def __init__(self, model, labels: LabelSet, image_size: int, device: str = "cpu", source: Path | None = None):
        names = [model.names[i] for i in sorted(model.names)]
        if names != list(labels.garment_types):
            raise DataError(source or "YOLO checkpoint", f"classes {names} differ from the run's label set "
                                                         f"{labels.garment_types}")
        self.model, self.labels, self.image_size, self.device = model, labels, image_size, device

    @classmethod
    def from_run(cls, run_dir: str | Path, config: dict, labels: LabelSet, device: str = "cpu") -> "YoloDetector":
        """The run's model: ``model.yaml`` + ``weights.safetensors`` (YOLO on EfficientNet-Lite, no pickle read), or
        an ultralytics checkpoint (``.pt``, a model of ultralytics' own that the user trained)."""
        from detectors import yolo_lite  # noqa: PLC0415
        yolo_lite.register()  # imports ultralytics offline-safe
        from ultralytics import YOLO  # noqa: PLC0415
        run = Path(run_dir)
        weights = run / config["weights"]
        if config.get("model"):
            description = run / config["model"]
            try:
                model = YOLO(str(description), task="detect")
                yolo_lite.load_weights(model.model, weights, list(labels.garment_types))
            except (TypeError, RuntimeError, OSError, ValueError, KeyError, AttributeError) as e:
                raise DataError(weights, f"does not load into the model {description.name} describes: {e}") from e
            return cls(model, labels, int(config["image_size"]), device, source=weights)
        try:
            model = YOLO(str(weights))
        except (TypeError, RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as e:
            # ultralytics reports an unpicklable checkpoint as a TypeError with a multi-line hint
            raise DataError(weights, "not a loadable ultralytics checkpoint (empty, truncated or corrupt?)") from e
        return cls(model, labels, int(config["image_size"]), device, source=weights)

    def predict(self, images: list[np.ndarray], conf: float = 0.25, batch_size: int = 8) -> list[list[Garment]]:
        """images: (H, W, 3) uint8 RGB each; boxes come back in each image's own pixels."""
        out: list[list[Garment]] = []
        for i in range(0, len(images), max(1, batch_size)):
            # ultralytics reads numpy arrays as BGR (OpenCV's order)
            batch = [np.ascontiguousarray(im[..., ::-1]) for im in images[i:i + batch_size]]
            results = self.model.predict(batch, conf=conf, imgsz=self.image_size, device=self.device,
                                         batch=len(batch), verbose=False, max_det=100)
            for r in results:
                xyxy, scores, cls = (r.boxes.xyxy.cpu().numpy(), r.boxes.conf.cpu().numpy(),
                                     r.boxes.cls.cpu().numpy().astype(int))
                out.append([Garment(type=self.labels.garment_types[c], box_xyxy=b.astype(np.float64), score=float(s))
                            for b, s, c in zip(xyxy, scores, cls)])
        return out
