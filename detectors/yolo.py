"""The YOLO backend's inference class: ultralytics' letterbox, NMS and box scaling around one network call, which is
the torch ``DetectionModel`` or its ONNX Runtime export (the runtime is chosen when the detector is built).

The network takes (N, 3, H, W) RGB in [0, 1], H and W multiples of the stride, and returns (N, 4 + classes, anchors):
box centre x, y, width, height in the letterboxed input's pixels, then one sigmoid score per class (ultralytics'
Detect head in export form). ultralytics is imported offline-safe through :mod:`detectors.offline`.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from fashion2stage.errors import DataError
from fashion2stage.labels import LabelSet
from fashion2stage.nets import Net, TorchNet, load_net
from fashion2stage.results import GarmentPrediction

NMS_IOU = 0.7  # ultralytics' predict default
MAX_DET = 100
OUTPUTS = ("output0",)  # the network's one output: (N, 4 + classes, anchors)


class YoloDetector:
    """``predict(images) -> list[list[GarmentPrediction]]``; class id ``i`` is ``labels.garment_types[i]``."""

    def __init__(self, model, labels: LabelSet, image_size: int, device: str = "cpu", source: Path | None = None,
                 net: Net | None = None):
        names = [model.names[i] for i in sorted(model.names)]
        if names != list(labels.garment_types):
            raise DataError(source or "YOLO checkpoint", f"classes {names} differ from the run's label set "
                                                         f"{labels.garment_types}")
        self.model, self.labels, self.image_size, self.device = model, labels, image_size, device
        self.stride = int(max(model.stride))
        self.net = net if net is not None else TorchNet(model, device, OUTPUTS, amp="auto")

    @classmethod
    def from_run(cls, run_dir: str | Path, spec, labels: LabelSet, device: str = "cpu", runtime: str = "torch",
                 threads: int = 0) -> "YoloDetector":
        """The run's model: config.json's ``model`` description + ``weights.safetensors`` (YOLO on
        EfficientNet-Lite, no pickle read), or an ultralytics checkpoint (``.pt``, a model of ultralytics' own that
        the user trained); its network on ``runtime`` (fashion2stage.nets.load_net)."""
        from detectors import yolo_lite  # noqa: PLC0415
        yolo_lite.register()  # imports ultralytics offline-safe
        run = Path(run_dir)
        weights = run / spec.weights
        if spec.model:
            try:
                model = yolo_lite.build_model(spec.model, list(labels.garment_types), weights)
            except (TypeError, RuntimeError, OSError, ValueError, KeyError, AttributeError, IndexError) as e:
                raise DataError(weights, f"does not load into the model config.json describes: {e}") from e
        else:
            from ultralytics import YOLO  # noqa: PLC0415
            try:
                model = YOLO(str(weights)).model.float().eval()
            except (TypeError, RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as e:
                # ultralytics reports an unpicklable checkpoint as a TypeError with a multi-line hint
                raise DataError(weights, "not a loadable ultralytics checkpoint (empty, truncated or corrupt?)") from e
        net = load_net("detector", run, model, OUTPUTS, lambda path: export_onnx(model, spec.image_size, path),
                       [weights, run / "config.json"], runtime=runtime, device=device, threads=threads, amp="auto")
        return cls(model, labels, spec.image_size, device, source=weights, net=net)

    def export_onnx(self, path: Path) -> Path:
        return export_onnx(self.model, self.image_size, path)

    def predict(self, images: list[np.ndarray], conf: float = 0.25,
                batch_size: int = 8) -> list[list[GarmentPrediction]]:
        """images: (H, W, 3) uint8 RGB each; boxes come back in each image's own pixels. One network call per image:
        each is letterboxed to its own shape (longer side ``image_size``, sides multiples of the stride), as
        ultralytics predicts."""
        from ultralytics.data.augment import LetterBox  # noqa: PLC0415
        from ultralytics.utils.nms import non_max_suppression  # noqa: PLC0415
        from ultralytics.utils.ops import scale_boxes  # noqa: PLC0415

        letterbox = LetterBox((self.image_size, self.image_size), auto=True, stride=self.stride)
        out: list[list[GarmentPrediction]] = []
        for im in images:
            x = letterbox(image=np.ascontiguousarray(im))
            x = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
            pred = torch.from_numpy(self.net(x)["output0"])
            # no time limit: evaluation keeps every box down to a score of 0.001
            det = non_max_suppression(pred, conf, NMS_IOU, max_det=MAX_DET, max_time_img=1e9)[0]
            boxes = scale_boxes(x.shape[2:], det[:, :4].clone(), im.shape[:2]).numpy()
            out.append([GarmentPrediction(type=self.labels.garment_types[int(c)], box=b.astype(np.float64).tolist(),
                                          score=float(s))
                        for b, s, c in zip(boxes, det[:, 4].numpy(), det[:, 5].numpy())])
        return out


def export_onnx(model, image_size: int, path: Path) -> Path:
    """Write ``model``'s network in export form (Detect returns its concatenated output), any batch and input size,
    to ``path`` atomically."""
    from ultralytics.nn.modules import Detect  # noqa: PLC0415

    model = copy.deepcopy(model).float().cpu().eval()
    for m in model.modules():
        if isinstance(m, Detect):
            m.export, m.format, m.dynamic = True, "onnx", True
    tmp = path.with_name(f".{path.name}.tmp")
    example = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(tmp), opset_version=17, dynamo=False, input_names=["images"],
                          output_names=list(OUTPUTS), dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                                                                    "output0": {0: "batch", 2: "anchors"}})
    tmp.replace(path)
    return path
