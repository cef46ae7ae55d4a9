"""ONNX export of the crop models and an ONNX Runtime stand-in for their torch networks.

The predictors (AttributePredictor, KeypointPredictor) only ever call ``self.model(x)`` on a normalised
(N, 3, H, W) tensor. :class:`OnnxModule` answers that same call through ONNX Runtime, so pre-processing, flip
test, decoding and the mapping back to the image stay one code path for both runtimes, and the two can only
differ by the network's own numerics (checked by the tests).
"""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch

from fashion2stage.onnx_session import open_session

ONNX_FILE = "model.onnx"


def export_onnx(model: torch.nn.Module, crop_hw: tuple[int, int], path: str | Path,
                output_names: list[str]) -> Path:
    """Export ``model`` (input ``images`` (N, 3, H, W) float, dynamic N) to ``path`` atomically."""
    path = Path(path)
    model = model.eval().cpu()
    example = torch.zeros(2, 3, *crop_hw)
    tmp = path.with_name(f".{path.name}.tmp")
    name = next(iter(inspect.signature(model.forward).parameters))  # dynamic_shapes is keyed by forward's argument
    torch.onnx.export(model, (example,), str(tmp), input_names=["images"], output_names=output_names,
                      dynamic_shapes={name: {0: torch.export.Dim("batch", min=1, max=4096)}}, dynamo=True,
                      external_data=False, verbose=False)
    tmp.replace(path)
    return path


class OnnxModule:
    """Called like the torch network it was exported from: tensor in; a tensor, or a dict of tensors by output
    name when ``dict_output``. Carries the attributes the predictors read (e.g. ``keys``, ``backbone_name``)."""

    def __init__(self, path: str | Path, dict_output: bool, threads: int = 0, outputs: list[str] | None = None,
                 **attributes):
        self.session = open_session(path, threads, outputs)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.dict_output = dict_output
        for k, v in attributes.items():
            setattr(self, k, v)

    def eval(self) -> "OnnxModule":
        return self

    def __call__(self, x: torch.Tensor):
        outs = self.session.run(None, {self.input_name: np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)})
        tensors = [torch.from_numpy(o) for o in outs]
        return dict(zip(self.output_names, tensors)) if self.dict_output else tensors[0]


def export_predictor(predictor, path: str | Path) -> Path:
    """Export a loaded AttributePredictor's or KeypointPredictor's torch network to ``path``."""
    keys = getattr(predictor.model, "keys", None)
    names = list(keys) if keys is not None else ["heatmaps"]
    return export_onnx(predictor.model, (predictor.crop_spec.height, predictor.crop_spec.width), path, names)


def export_attribute_run(run_dir: str | Path) -> Path:
    from classifiers.attributes import load_attribute_model  # noqa: PLC0415

    return export_predictor(load_attribute_model(run_dir), Path(run_dir) / ONNX_FILE)


def export_keypoint_run(run_dir: str | Path) -> Path:
    from classifiers.keypoints import load_keypoint_model  # noqa: PLC0415

    return export_predictor(load_keypoint_model(run_dir), Path(run_dir) / ONNX_FILE)


def use_onnx(predictor, run_dir: str | Path, threads: int = 0, path: str | Path | None = None):
    """Swap a loaded predictor's torch network for ONNX Runtime running ``path`` (default: the run folder's
    ``model.onnx``, which ``fashion2stage export RUN`` writes; FileNotFoundError when there is none)."""
    path = Path(run_dir) / ONNX_FILE if path is None else Path(path)
    keys = getattr(predictor.model, "keys", None)
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {ONNX_FILE} (run: fashion2stage export {run_dir})")
    attrs = {"keys": keys, "backbone_name": predictor.model.backbone_name} if keys is not None else {}
    outputs = list(keys) if keys is not None else ["heatmaps"]  # the names export_*_run gives them
    predictor.model = OnnxModule(path, dict_output=keys is not None, threads=threads, outputs=outputs, **attrs)
    return predictor
