"""ONNX Runtime sessions of the exported networks, detectors and crop models alike.

Here, below both model packages, so that every predictor's network (fashion2stage/nets.py, ``OnnxNet``) opens its
file the same way.
"""
from __future__ import annotations

from pathlib import Path

from fashion2stage.errors import DataError
from fashion2stage.runs import one_line


def open_session(path: str | Path, threads: int = 0, outputs: list[str] | None = None):
    """An ONNX Runtime CPU session of ``path``; a file that does not load (truncated, not ONNX, an operator this
    runtime lacks) or whose outputs are not ``outputs`` is one :class:`DataError` naming it."""
    import onnxruntime as ort  # noqa: PLC0415

    opts = ort.SessionOptions()
    # no memory arena: it keeps the peak of the largest input ever seen for the life of the process (1.3 GB more
    # after one 25 MP photo through the detector, issue 28); without it memory returns to its resting size
    opts.enable_cpu_mem_arena = False
    if threads:
        opts.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001  (ONNX Runtime's errors derive from Exception only)
        raise DataError(path, f"cannot load the ONNX model (re-run fashion2stage export?): {one_line(e)}") from None
    names = [o.name for o in session.get_outputs()]
    if outputs is not None and sorted(names) != sorted(outputs):
        raise DataError(path, f"ONNX outputs {names} are not this run's {outputs} (exported from another run?)")
    return session
