"""The HTTP service: routes, upload limits, one-line JSON errors. ``create_app`` builds it; ``serve`` runs it.

Every answer that is not a prediction is ``{"error": "<one line>"}`` with a 4xx/5xx status: 400 a broken upload
(empty, not an image, truncated, malformed multipart), 413 over a limit (bytes, pixels, files), 415 not multipart or
a part that is not an image type, 503 busy or still loading (with Retry-After). The server only reads what clients
upload; it never fetches a URL.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict
from importlib import resources
from pathlib import PurePosixPath
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from fashion2stage.app.serve.batcher import Batcher, QueueFull
from fashion2stage.app.serve.limits import Limits
from fashion2stage.errors import ImageReadError, ImageTooLargeError
from fashion2stage.images import load_image_bytes

log = logging.getLogger("fashion2stage.app.serve")

_MULTIPART_SLACK = 64 * 1024  # part headers and boundaries on top of the files themselves
_IMAGE_TYPES = ("image/", "application/octet-stream")  # what a part may declare (or nothing at all)


class ApiError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


class _BodyTooLarge(Exception):
    pass


def _error(status: int, message: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)


class Service:
    """The loaded model and the batcher: one per app. ``status`` is loading -> ready, or failed (``error`` says why)."""

    def __init__(self, load_reader: Callable[[], object], limits: Limits, on_fatal: Callable[[], None] | None):
        self.limits, self.load_reader, self.on_fatal = limits, load_reader, on_fatal
        self.reader = None
        self.status, self.error = "loading", None
        self.batcher = Batcher(self._predict, limits.max_batch, limits.max_wait_ms, limits.queue_size)

    def _predict(self, images, names):
        preds = self.reader(images)
        for pred, name in zip(preds, names):
            pred.image = name  # the reader calls in-memory images "<image N>"; the upload's own name is more useful
        return preds

    async def load(self) -> None:
        # in the model's own thread: loading and every later prediction happen there, one at a time
        try:
            self.reader = await asyncio.get_running_loop().run_in_executor(self.batcher.worker, self.load_reader)
            self.status = "ready"
            log.info("models loaded; serving")
        except Exception as e:  # noqa: BLE001  (any failure to load is reported, then the server stops)
            self.status, self.error = "failed", " ".join(f"cannot load the models: {e}".split())
            log.error(self.error)
            if self.on_fatal is not None:
                self.on_fatal()


def _limited(receive, limit: int):
    """``receive`` that stops a request body at ``limit`` bytes, whatever its Content-Length said (or chunked)."""
    seen = 0

    async def wrapped():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge()
        return message
    return wrapped


def _name(filename: str | None, n: int) -> str:
    """The upload's file name without any directory part (clients send what they like), or ``upload-N``."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name[:200]
    return name or f"upload-{n}"


async def _read_uploads(request: Request, limits: Limits) -> list[tuple[str, bytes]]:
    """The request's file parts as (name, bytes), in order, within the limits."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ApiError(415, f"expected a multipart/form-data upload of image files, got {ctype or 'no content type'}")
    body_limit = limits.max_files * limits.max_file_bytes + _MULTIPART_SLACK
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > body_limit:
        raise ApiError(413, f"request body of {int(length):,} bytes > the limit {body_limit:,} "
                            f"({limits.max_files} files of at most {limits.max_file_bytes:,} bytes)")
    limited = Request(request.scope, _limited(request.receive, body_limit))
    try:
        async with limited.form(max_files=limits.max_files, max_fields=16) as form:
            parts = [v for _, v in form.multi_items() if not isinstance(v, str)]
            if not parts:
                raise ApiError(400, "no image files in the request: send them as multipart file fields, "
                                    "e.g. curl -F files=@photo.jpg")
            uploads = []
            for n, part in enumerate(parts):
                name = _name(part.filename, n)
                declared = (part.content_type or "").lower()
                if declared and not declared.startswith(_IMAGE_TYPES):
                    raise ApiError(415, f"{name}: content type {declared} is not an image")
                if part.size is not None and part.size > limits.max_file_bytes:
                    raise ApiError(413, f"{name}: {part.size:,} bytes > the limit {limits.max_file_bytes:,}")
                uploads.append((name, await part.read()))
    except _BodyTooLarge:
        raise ApiError(413, f"request body over the limit of {body_limit:,} bytes") from None
    except HTTPException as e:  # starlette's multipart parser reports its limits and parse errors this way
        if str(e.detail).startswith("Too many files"):
            raise ApiError(413, f"too many files: at most {limits.max_files} per request") from None
        raise ApiError(400, f"malformed multipart body: {e.detail}") from None
    return uploads


def create_app(load_reader: Callable[[], object], limits: Limits = Limits(),
               on_fatal: Callable[[], None] | None = None) -> FastAPI:
    """The service. ``load_reader()`` returns a :class:`fashion2stage.app.reader.Reader`; it is called once, in the
    model thread, after startup (/healthz says "loading" until it returns). ``on_fatal`` is called if it raises."""
    service = Service(load_reader, limits, on_fatal)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service.batcher.start()
        loading = asyncio.get_running_loop().create_task(service.load())
        yield
        loading.cancel()
        await service.batcher.stop()

    app = FastAPI(title="fashion2stage", version="1", lifespan=lifespan,
                  description="Garment types, boxes, attributes and landmarks of uploaded photos.")
    app.state.service = service
    page = resources.files("fashion2stage.app.serve").joinpath("static")
    index_html, page_js = (page / "index.html").read_text("utf-8"), (page / "page.js").read_text("utf-8")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return _error(e.status, e.message, e.retry_after)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, e: HTTPException):
        return _error(e.status_code, e.detail, None)

    @app.exception_handler(Exception)  # anything unforeseen: still one JSON line (the traceback goes to the log)
    async def _unexpected(request: Request, e: Exception):
        return _error(500, f"internal error: {type(e).__name__}")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        return _error(422, "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(index_html)

    @app.get("/page.js", include_in_schema=False)
    async def script():
        return Response(page_js, media_type="text/javascript")

    @app.get("/healthz", summary="Readiness: 200 once the models are loaded, 503 before (or if loading failed)")
    async def healthz():
        b = service.batcher
        body = {"status": service.status, "queue": {"pending": b.pending, "size": b.queue_size},
                "served": {"batches": b.batches, "images": b.images, "model_seconds": round(b.model_seconds, 3)},
                "limits": asdict(limits)}
        if service.error:
            body["error"] = service.error
        return JSONResponse(body, status_code=200 if service.status == "ready" else 503)

    @app.post("/v1/predict", summary="Read the garments in uploaded photos",
              description="Multipart upload of one or more images (any field name; `files` in the examples). "
                          "Answers `{\"predictions\": [line, ...]}`, one predictions.jsonl line per image in upload "
                          "order (docs/OUTPUT.md), `image` being the upload's file name.",
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                  "type": "object", "required": ["files"],
                  "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}})
    async def predict(request: Request):
        if service.status != "ready":
            raise ApiError(503, f"models {service.status}" + (f": {service.error}" if service.error else ""),
                           retry_after=5 if service.status == "loading" else None)
        if service.batcher.free() <= 0:  # refuse before reading the body: a busy server should cost clients little
            raise ApiError(503, f"server busy: {service.batcher.pending} images pending",
                           retry_after=service.batcher.retry_after())
        uploads = await _read_uploads(request, limits)
        try:
            images = await asyncio.gather(*(asyncio.to_thread(load_image_bytes, data, name, limits.max_pixels)
                                            for name, data in uploads))
        except ImageTooLargeError as e:
            raise ApiError(413, str(e)) from None
        except ImageReadError as e:
            raise ApiError(400, str(e)) from None
        try:
            futures = service.batcher.submit(list(images), [name for name, _ in uploads])
        except QueueFull as e:
            raise ApiError(503, f"server busy: {service.batcher.pending} images pending, no room for "
                                f"{len(uploads)} more", retry_after=e.retry_after) from None
        try:
            preds = await asyncio.gather(*futures)
        except Exception as e:  # noqa: BLE001  (the model failed on this batch: say so, in one line, and go on)
            log.exception("prediction failed")
            raise ApiError(500, f"prediction failed: {type(e).__name__}: {e}") from None
        return {"predictions": [p.to_dict() for p in preds]}

    return app


def serve(load_reader: Callable[[], object], host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits(),
          max_connections: int = 64) -> None:
    """Run the service with uvicorn until interrupted. Raises RuntimeError when the models cannot be loaded."""
    import uvicorn  # noqa: PLC0415

    server: uvicorn.Server | None = None

    def stop() -> None:
        server.should_exit = True

    app = create_app(load_reader, limits, on_fatal=stop)
    # limit_concurrency: past it uvicorn answers 503 itself, so even connections that never reach the queue are bounded
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, limit_concurrency=max_connections,
                                           timeout_keep_alive=5, log_level="info"))
    server.run()
    if app.state.service.error:
        raise RuntimeError(app.state.service.error)
