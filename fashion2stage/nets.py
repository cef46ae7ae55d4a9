"""The network of a predictor, a torch module or an ONNX Runtime session behind one call, chosen when it is loaded.

Every predictor (the Faster R-CNN and YOLO detectors, the attribute and keypoint models) holds one ``net`` and
calls it as ``net(x) -> {output name: array}`` on a float32 numpy batch; pre- and post-processing around that call
are the predictor's own code, the same for both runtimes, so the two differ only by the networks' arithmetic.
:func:`load_net` makes the choice (docs/runtime.md): ``torch``, or ``onnx``/``auto`` = ONNX Runtime on the CPU from
the per-user export cache (fashion2stage/cache.py, its onnx/ shelf); under ``auto`` a network that fails to export
or load stays on torch with one warning line, under ``onnx`` it is one DataError naming the run folder.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch

RUNTIMES = ("auto", "onnx", "torch")

log = logging.getLogger("fashion2stage.runtime")


class TorchNet:
    """A torch module called on numpy. ``outputs`` names a tensor output, or the items of a tuple output (extra
    items are dropped: ultralytics' Detect returns its raw maps after the boxes); a dict output keeps its keys.
    ``amp``: the autocast dtype, ``"auto"`` = float16 on CUDA and none on the CPU (where float32 is faster); with
    it on CUDA also channels_last, where convolutions gain from it (None, the default: the module as trained)."""

    def __init__(self, module: torch.nn.Module, device: str | torch.device = "cpu",
                 outputs: tuple[str, ...] = ("output0",), amp: torch.dtype | None | str = None):
        self.device = torch.device(device)
        self.amp = (torch.float16 if self.device.type == "cuda" else None) if amp == "auto" else amp
        self.outputs = tuple(outputs)
        self.module = module.to(self.device).eval()
        self.channels_last = self.device.type == "cuda" and self.amp is not None
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        t = torch.from_numpy(x).to(self.device)
        if self.channels_last and t.ndim == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp or torch.float32,
                                                    enabled=self.amp is not None):
            y = self.module(t)
        if isinstance(y, torch.Tensor):
            y = {self.outputs[0]: y}
        elif isinstance(y, (list, tuple)):
            y = dict(zip(self.outputs, y))
        return {k: (v.float() if v.is_floating_point() else v).cpu().numpy() for k, v in y.items()}


class OnnxNet:
    """The same call through an ONNX Runtime CPU session of ``path`` (``threads`` intra-op threads, 0: all cores);
    a file whose outputs are not ``outputs`` is refused when opened."""

    def __init__(self, path: str | Path, threads: int = 0, outputs: tuple[str, ...] | None = None):
        from fashion2stage.onnx_session import open_session  # noqa: PLC0415

        self.session = open_session(path, threads, None if outputs is None else list(outputs))
        self.input_name = self.session.get_inputs()[0].name
        self.outputs = tuple(o.name for o in self.session.get_outputs())

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})))


Net = TorchNet | OnnxNet


def resolve_runtime(runtime: str, device: str) -> str:
    """``"onnx"`` or ``"torch"``: what ``runtime`` means on ``device`` (ONNX Runtime is used on the CPU only)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        return "onnx" if device == "cpu" and importlib.util.find_spec("onnxruntime") is not None else "torch"
    return runtime


def load_net(stage: str, run: str | Path, module: torch.nn.Module, outputs: tuple[str, ...],
             export: Callable[[Path], object], files: list[Path], settings: dict | None = None,
             runtime: str = "torch", device: str = "cpu", threads: int = 0,
             amp: torch.dtype | None | str = None) -> Net:
    """``stage``'s network (``module``, loaded from the run folder ``run``) on the runtime ``runtime`` means on
    ``device``. For ONNX Runtime, ``export(path)`` writes the graph on a cache miss; the cache file is named by the
    bytes of ``files`` (weights, config.json) and ``settings`` (what else the graph bakes in)."""
    if resolve_runtime(runtime, device) == "onnx":
        from fashion2stage.errors import DataError  # noqa: PLC0415
        from fashion2stage.cache import cached_onnx  # noqa: PLC0415
        from fashion2stage.runs import one_line  # noqa: PLC0415

        try:
            return cached_onnx(stage, files, settings or {}, export, lambda p: OnnxNet(p, threads, outputs),
                               notify=lambda line: log.warning(f"fashion2stage: {line}"))
        except Exception as e:  # noqa: BLE001  (exporters and ONNX Runtime raise many types; torch still works)
            if runtime == "onnx":
                raise DataError(run, f"cannot run the {stage} model on ONNX Runtime: {one_line(e)[:300]}") from e
            log.warning(f"fashion2stage: the {stage} model stays on torch (slower): ONNX Runtime failed: "
                        f"{type(e).__name__}: {one_line(e)[:300]}")
    return TorchNet(module, device, outputs, amp)


def normalised(crops: np.ndarray, mean, std) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB crops -> (N, 3, H, W) float32 ``(x / 255 - mean) / std``, a crop model's input."""
    x = np.ascontiguousarray(crops).astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
