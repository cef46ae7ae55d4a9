"""The HTTP service: routes, admission, per-file answers, one-line JSON errors. ``create_app`` builds it;
``server.serve`` runs it.

Every file of a request gets its own answer, as ``predict`` gives every photo a line: a prediction, or
``{"image", "error"}`` for a file that could not be read while the others are still predicted. Everything else that
is not a prediction is ``{"error": "<one line>"}`` with a 4xx/5xx status: 400 a broken request (malformed multipart,
no file), 413 over a request limit (bytes, files), 415 not multipart, 422 a bad parameter, 503 busy or still
loading (with Retry-After). The server only reads what clients upload; it never fetches a URL.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import logging
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Callable

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from fashion2stage.app.serve.batcher import Batcher, QueueFull
from fashion2stage.app.serve.connections import DROPPED
from fashion2stage.app.serve.limits import Limits
from fashion2stage.app.serve.uploads import ApiError, Part, read_parts
from fashion2stage.errors import ImageReadError, ImageTooLargeError
from fashion2stage.images import load_image_bytes
from fashion2stage.runs import one_line

log = logging.getLogger("fashion2stage.app.serve")

# glibc keeps freed heap in its arenas; handing it back after a batch of large photos brings the server back to its
# resting size (docs/serve.md). None where there is no glibc.
_malloc_trim = getattr(ctypes.CDLL(None), "malloc_trim", None)


@dataclass
class Job:
    """One file of a request, admitted to the queue undecoded; ``conf`` is the request's (None: the server's)."""
    part: Part
    conf: float | None


@dataclass
class Answer:
    """One file's answer: its predictions.jsonl line and the status a request of only this file would get."""
    status: int
    line: dict


def _line(pred) -> dict:
    """The predictions.jsonl line of an ImagePrediction, as a dict."""
    return pred.to_dict() if hasattr(pred, "to_dict") else pred.to_json()  # to_dict: the Results API of issue 27


def _error(status: int, message: str, retry_after: int | None = None, **extra) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": " ".join(str(message).split()), **extra}, status_code=status, headers=headers)


class Service:
    """The loaded model and the batcher: one per app. ``status`` is loading -> ready, or failed (``error`` says why)."""

    def __init__(self, load_reader: Callable[[], object], limits: Limits, on_fatal: Callable[[], None] | None):
        self.limits, self.load_reader, self.on_fatal = limits, load_reader, on_fatal
        self.reader, self.conf = None, None  # conf: the server's default detector threshold
        self.status, self.error = "loading", None
        self.uploads = 0  # POST /v1/predict requests being read or answered
        self.batcher = Batcher(self._run_jobs, limits.max_batch, limits.max_wait_ms, limits.queue_size)

    def _run_jobs(self, jobs: list[Job]) -> list[Answer]:
        """In the model thread: decode the batch's uploads one by one (so at most ``max_batch`` decoded images exist),
        then predict them, one reader call per ``conf``."""
        answers: list[Answer | None] = [None] * len(jobs)
        images = {}
        for i, job in enumerate(jobs):
            try:
                job.part.file.seek(0)
                images[i] = load_image_bytes(job.part.file.read(), job.part.name, self.limits.max_pixels)
            except ImageReadError as e:
                answers[i] = Answer(413 if isinstance(e, ImageTooLargeError) else 400,
                                    {"image": job.part.name, "error": e.problem})
            except (OSError, ValueError) as e:  # its spooled file was closed: the client left meanwhile
                answers[i] = Answer(400, {"image": job.part.name, "error": f"cannot read the upload: {one_line(e)}"})
        try:
            for conf in dict.fromkeys(jobs[i].conf for i in images):
                rows = [i for i in images if jobs[i].conf == conf]
                found = self._predict([images[i] for i in rows], [jobs[i].part.name for i in rows], conf)
                for i, answer in zip(rows, found):
                    answers[i] = answer
        finally:
            images.clear()
            if _malloc_trim is not None:
                _malloc_trim(0)
        return answers

    def _predict(self, images, names: list[str], conf: float | None) -> list[Answer]:
        pipeline = self.reader.pipeline
        pipeline.conf = self.conf if conf is None else conf  # safe: only this thread ever runs the pipeline
        try:
            preds = self.reader(images)
        except Exception as e:  # noqa: BLE001  (a model failure costs these files their answer, not the server)
            log.exception("prediction failed")
            return [Answer(500, {"image": n, "error": f"prediction failed: {type(e).__name__}: {one_line(e)}"})
                    for n in names]
        finally:
            pipeline.conf = self.conf
        for pred, name in zip(preds, names):
            pred.image = name  # the reader calls in-memory images "<image N>"; the upload's own name is more useful
        return [Answer(200 if p.error is None else 422, _line(p)) for p in preds]

    async def load(self) -> None:
        # in the model's own thread: loading and every later prediction happen there, one at a time
        try:
            self.reader = await asyncio.get_running_loop().run_in_executor(self.batcher.worker, self.load_reader)
            self.conf = float(self.reader.pipeline.conf)
            self.status = "ready"
            log.info("models loaded; serving")
        except Exception as e:  # noqa: BLE001  (any failure to load is reported, then the server stops)
            self.status, self.error = "failed", " ".join(f"cannot load the models: {e}".split())
            log.error(self.error)
            if self.on_fatal is not None:
                self.on_fatal()

    def admit(self) -> None:
        """Refuse a request before its body is read when it could not be served: a busy server costs clients
        little."""
        if self.status != "ready":
            raise ApiError(503, f"models {self.status}" + (f": {self.error}" if self.error else ""),
                           retry_after=5 if self.status == "loading" else None)
        if self.uploads >= self.limits.max_uploads:
            raise ApiError(503, f"server busy: {self.uploads} uploads open", retry_after=self.batcher.retry_after())
        if self.batcher.free() <= 0:
            raise ApiError(503, f"server busy: {self.batcher.pending} images pending",
                           retry_after=self.batcher.retry_after())


async def _results_or_leave(request: Request, futures: list[asyncio.Future]) -> list | None:
    """The futures' results, or None when the client disconnects first; then the futures are cancelled and the
    batcher skips them."""
    if not futures:
        return []
    results = asyncio.gather(*futures)
    try:
        while not results.done():
            leaving = asyncio.ensure_future(request.receive())  # once the body is in, the next message is a disconnect
            try:
                await asyncio.wait({results, leaving}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                leaving.cancel()  # nothing when it is done
            if not results.done() and leaving.result()["type"] == "http.disconnect":
                return None
        return results.result()
    finally:
        results.cancel()  # nothing when they are done; else nobody waits for them any more


def _respond(parts: list[Part], answers: list[Answer]) -> JSONResponse:
    """200 with every file's line when at least one was read; else the first file's status, naming every file."""
    lines = [a.line for a in answers]
    if any(a.status == 200 for a in answers):
        return JSONResponse({"predictions": lines})
    problems = "; ".join(f"{a.line['image']}: {a.line['error']}" for a in answers)
    message = problems if len(answers) == 1 else f"none of the {len(answers)} files could be read: {problems}"
    return _error(answers[0].status, message, predictions=lines)


def _favicon() -> bytes:
    """A 32 x 32 t-shirt in the overlays' first colour, drawn at start-up (no binary file in the repository)."""
    from PIL import Image, ImageDraw  # noqa: PLC0415

    im = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    shirt = [(11, 3), (14, 6), (18, 6), (21, 3), (30, 9), (26, 15), (23, 13), (23, 29), (9, 29), (9, 13), (6, 15),
             (2, 9)]
    ImageDraw.Draw(im).polygon(shirt, fill=(230, 25, 75, 255))
    buf = io.BytesIO()
    im.save(buf, "ICO", sizes=[(32, 32)])
    return buf.getvalue()


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
    favicon = _favicon()

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

    @app.get("/favicon.ico", include_in_schema=False)
    async def icon():
        return Response(favicon, media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})

    @app.get("/healthz", summary="Readiness: 200 once the models are loaded, 503 before (or if loading failed)")
    async def healthz():
        b = service.batcher
        body = {"status": service.status, "conf": service.conf,
                "queue": {"pending": b.pending, "size": b.queue_size},
                "uploads": {"open": service.uploads, "size": limits.max_uploads},
                "served": {"batches": b.batches, "images": b.images, "model_seconds": round(b.model_seconds, 3)},
                "limits": {**asdict(limits), "peak_bytes": limits.peak_bytes()}}
        if service.error:
            body["error"] = service.error
        return JSONResponse(body, status_code=200 if service.status == "ready" else 503)

    @app.post("/v1/predict", summary="Read the garments in uploaded photos",
              description="Multipart upload of one or more images (any field name; `files` in the examples). "
                          "Answers `{\"predictions\": [line, ...]}`, one predictions.jsonl line per file in upload "
                          "order (docs/OUTPUT.md), `image` being the upload's file name; a file that cannot be read "
                          "gets an error line and the others are still read.",
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                  "type": "object", "required": ["files"],
                  "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}})
    async def predict(request: Request, conf: float | None = Query(
            None, ge=0.0, le=1.0, allow_inf_nan=False,
            description="Detector score threshold for this request (default: the server's --conf).")):
        service.admit()
        service.uploads += 1
        try:
            async with read_parts(request, limits) as parts:
                good = [p for p in parts if p.problem is None]
                try:
                    futures = service.batcher.submit([Job(p, conf) for p in good]) if good else []
                except QueueFull as e:
                    raise ApiError(503, f"server busy: {service.batcher.pending} images pending, no room for "
                                        f"{len(good)} more", retry_after=e.retry_after) from None
                results = await _results_or_leave(request, futures)
                if results is None:
                    return _gone(request, "dropped while its photos waited for the model")
        except ClientDisconnect:
            return _gone(request, "not completed")
        finally:
            service.uploads -= 1
        found = iter(results)
        return _respond(parts, [next(found) if p.problem is None else
                                Answer(p.status, {"image": p.name, "error": p.problem}) for p in parts])

    def _gone(request: Request, when: str) -> Response:
        """One log line for a request whose connection is gone; the answer is never sent."""
        why = {"timeout": f"not received within {limits.read_timeout_s:g} s, answered 408",
               "shutdown": "dropped at shutdown"}.get(request.scope.get(DROPPED), "the client disconnected")
        who = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        log.info(f"{who}: upload {when}: {why}")
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it

    return app
