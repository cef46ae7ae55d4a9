"""ONNX export of the crop models: into the per-user cache when ``predict`` runs them on ONNX Runtime
(fashion2stage/nets.py), and ``fashion2stage export RUN`` (``RUN/model.onnx``, for serving them elsewhere)."""
from __future__ import annotations

import inspect
from pathlib import Path

import torch

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


def export_attribute_run(run_dir: str | Path) -> Path:
    from classifiers.attributes import load_attribute_model  # noqa: PLC0415

    p = load_attribute_model(run_dir)
    return export_onnx(p.model, (p.crop_spec.height, p.crop_spec.width), Path(run_dir) / ONNX_FILE, list(p.heads))


def export_keypoint_run(run_dir: str | Path) -> Path:
    from classifiers.keypoints import OUTPUTS, load_keypoint_model  # noqa: PLC0415

    p = load_keypoint_model(run_dir)
    return export_onnx(p.net.module, (p.crop_spec.height, p.crop_spec.width), Path(run_dir) / ONNX_FILE, list(OUTPUTS))
