"""Which runtime runs the pipeline's networks, and the switch of a loaded pipeline to ONNX Runtime.

``auto`` (the default of predict, evaluate, the Python API, serve and ``predict --engine ray``, which all load
through ``load_pipeline``) means ONNX Runtime on the CPU where ``onnxruntime`` is installed, else torch. The ONNX
files come from the per-user export cache (classifiers/onnx_cache.py), exported on first use; a model that cannot
be exported or loaded stays on torch with one line on stderr (``auto``), or is one clear error (``onnx``).
docs/runtime.md is the user's page for all of this.
"""
from __future__ import annotations

import importlib.util
import logging
from functools import partial
from pathlib import Path

RUNTIMES = ("auto", "onnx", "torch")
STAGES = ("detector", "attributes", "keypoints")

log = logging.getLogger("fashion2stage.runtime")


def check_device(device: str) -> None:
    """A ValueError naming the real cause when ``device`` cannot run here: not a device name, no CUDA in this torch
    build, no CUDA device found, or a device index past the last one (checked before any model file is read, so
    the error is not blamed on one)."""
    if device == "cpu":
        return
    import torch  # noqa: PLC0415

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r}: expected cpu, cuda or cuda:N") from None
    if dev.type != "cuda":
        if dev.type == "cpu":
            return
        raise ValueError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    if torch.version.cuda is None:
        raise ValueError(f"--device {device}: this torch build has no CUDA support (torch {torch.__version__}); "
                         "use --device cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(f"--device {device}: no CUDA device found (no NVIDIA GPU or driver visible); use --device cpu")
    if dev.index is not None and dev.index >= count:
        raise ValueError(f"--device {device}: only {count} CUDA device(s) here (cuda:0 to cuda:{count - 1})")


def resolve_runtime(runtime: str, device: str) -> str:
    """``"onnx"`` or ``"torch"``: what ``runtime`` means on ``device`` (ONNX Runtime is used on the CPU only)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        return "onnx" if device == "cpu" and importlib.util.find_spec("onnxruntime") is not None else "torch"
    return runtime


def to_onnx_runtime(pipe, runs: dict, threads: int, strict: bool) -> None:
    """Swap each loaded network of ``pipe`` for its ONNX Runtime twin from the export cache (``runs``: the run
    folder of each stage). ``strict``: a failure is a DataError naming the run folder; otherwise that model stays on
    torch and one line on stderr says why (the others still switch)."""
    from classifiers.onnx_cache import cached_onnx  # noqa: PLC0415  (heavy imports only when predicting)
    from classifiers.onnx_runtime import export_predictor, use_onnx  # noqa: PLC0415
    from detectors.export import export_detector_onnx, use_onnx_detector  # noqa: PLC0415
    from fashion2stage.errors import DataError  # noqa: PLC0415
    from fashion2stage.runs import load_config, one_line  # noqa: PLC0415

    for stage in STAGES:
        model, run = getattr(pipe, stage), runs[stage]
        if model is None:
            continue
        config = Path(run) / "config.json"
        if stage == "detector":
            weights = Path(run) / load_config(run).get("weights", "weights.safetensors")
            export = partial(export_detector_onnx, run, detector=model)
            load = partial(use_onnx_detector, model, run, threads)
        else:
            weights = Path(run) / "weights.safetensors"
            export, load = partial(export_predictor, model), partial(use_onnx, model, run, threads)
        # what else the graph bakes in (a Faster R-CNN's input size and proposals): part of the cache key
        settings = model.inference_settings() if hasattr(model, "inference_settings") else {}
        try:
            setattr(pipe, stage, cached_onnx(stage, [weights, config], settings, export, load,
                                             notify=lambda line: log.warning(f"fashion2stage: {line}")))
        except Exception as e:  # noqa: BLE001  (exporters and ONNX Runtime raise many types; torch still works)
            if strict:
                raise DataError(run, f"cannot run the {stage} model on ONNX Runtime: {one_line(e)[:300]}") from e
            log.warning(f"fashion2stage: the {stage} model stays on torch (slower): ONNX Runtime failed: "
                        f"{type(e).__name__}: {one_line(e)[:300]}")
