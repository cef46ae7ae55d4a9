"""The ``fashion2stage serve`` command: parse its flags and call :func:`fashion2stage.app.serve.server.serve`.

Kept beside the service (cli.py registers it) so that cli.py stays a list of commands; importing it loads neither
FastAPI nor torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fashion2stage.app.cli_common import photo_kind_option, set_threads
from fashion2stage.app.serve.limits import Limits

_D = Limits()


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface; no authentication "
                             "or TLS, so mind who can reach it)."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port to listen on."),
    detector: Optional[Path] = typer.Option(None, help="detect-train run folder (default: the shipped model)."),
    classifier: Optional[Path] = typer.Option(None, help="classify-train run folder (default: the shipped model)."),
    keypoints: Optional[Path] = typer.Option(None, help="keypoints-train run folder (default: the shipped model)."),
    no_default: bool = typer.Option(False, "--no-default", help="Use only the run folders given, not the shipped "
                                    "ones."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    runtime: Optional[str] = typer.Option(None, help="auto, onnx or torch (default: the Python API's, auto, as "
                                          "predict; docs/runtime.md)."),
    batch_size: int = typer.Option(0, min=0, help="Images per pipeline call inside a model batch (0: predict's rule)."),
    threads: int = typer.Option(0, min=0, help="CPU threads of torch and ONNX Runtime (0: their defaults)."),
    conf: float = typer.Option(0.25, min=0.0, max=1.0, help="Detector score threshold."),
    flip_tta: bool = typer.Option(False, "--flip-tta", help="Average attribute probabilities over a horizontal flip."),
    single_item: Optional[bool] = photo_kind_option(),
    max_file_bytes: int = typer.Option(_D.max_file_bytes, min=1, help="Largest upload per image, in bytes."),
    max_files: int = typer.Option(_D.max_files, min=1, help="Most images per request."),
    max_pixels: int = typer.Option(_D.max_pixels, min=1, help="Largest image (width x height), read from its "
                                   "header before decoding: refuses decompression bombs."),
    queue_size: int = typer.Option(_D.queue_size, min=1, help="Images waiting or in the model; past it: 503."),
    max_batch: int = typer.Option(_D.max_batch, min=1, help="Most images in one model batch (and decoded at once)."),
    batch_wait_ms: float = typer.Option(_D.max_wait_ms, min=0.0, help="How long a batch waits for more images."),
    max_uploads: int = typer.Option(_D.max_uploads, min=1, help="Uploads read or answered at once; past it: 503."),
    max_connections: int = typer.Option(_D.max_connections, min=1, help="Open connections of any kind; past it: "
                                        "503."),
    read_timeout: float = typer.Option(_D.read_timeout_s, min=0.001, help="Seconds a request's headers and body "
                                       "may take to arrive; past it: 408."),
    shutdown_timeout: float = typer.Option(_D.shutdown_timeout_s, min=0.0, help="Seconds open requests get to "
                                           "finish on SIGTERM before they are dropped."),
) -> None:
    """Serve the pipeline over HTTP: POST /v1/predict (images -> predictions JSON), GET /healthz, a web page at /."""
    from fashion2stage.app.serve.server import serve as run

    try:
        limits = Limits(max_file_bytes=max_file_bytes, max_files=max_files, max_pixels=max_pixels,
                        queue_size=queue_size, max_batch=max_batch, max_wait_ms=batch_wait_ms,
                        max_uploads=max_uploads, max_connections=max_connections, read_timeout_s=read_timeout,
                        shutdown_timeout_s=shutdown_timeout)
    except ValueError as e:
        _fail(str(e))
    options = dict(detector=detector, classifier=classifier, keypoints=keypoints, device=device, conf=conf,
                   flip_tta=flip_tta, threads=threads, use_default=not no_default, batch_size=batch_size,
                   single_item=single_item)
    if runtime is not None:
        options["runtime"] = runtime

    def load_reader():
        from fashion2stage.app.reader import Reader  # noqa: PLC0415

        set_threads(threads)  # torch runs a model whenever ONNX Runtime is not used for it (runtime auto or torch)
        return Reader(**options)

    try:
        run(load_reader, host=host, port=port, limits=limits)
    except RuntimeError as e:
        _fail(str(e))


def _fail(message: str) -> None:
    typer.echo(f"fashion2stage: {message}", err=True)
    raise typer.Exit(code=1)
