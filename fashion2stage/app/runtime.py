"""Whether ``--device`` can run here, checked before any model file is read.

Which runtime runs each network (``auto`` / ``onnx`` / ``torch``) is chosen when the model is loaded, by
fashion2stage/nets.py (docs/runtime.md).
"""
from __future__ import annotations


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
