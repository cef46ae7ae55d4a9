"""Reading a ``POST /v1/predict`` body: multipart file parts, spooled to disk past a small size, within the limits.

A request-level problem (not multipart, malformed, too large a body, too many files, no file) raises
:class:`ApiError`; a problem of one file (a type that is not an image, too many bytes) is that file's own answer and
the others go on. The files stay spooled (in memory up to :data:`SPOOL_BYTES` each, else in a temporary file) until
their batch is decoded: an upload waiting in the queue costs disk, not memory.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import AsyncIterator, BinaryIO

from fastapi import Request
from starlette.formparsers import MultiPartException, MultiPartParser

from fashion2stage.app.serve.limits import SPOOL_BYTES, Limits
from fashion2stage.io import safe_name

MULTIPART_SLACK = 64 * 1024  # part headers and boundaries on top of the files themselves
_IMAGE_TYPES = ("image/", "application/octet-stream")  # what a part may declare (or nothing at all)


class ApiError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


@dataclass
class Part:
    """One uploaded file: its safe name, its spooled bytes, and the problem that refuses it (None: go on)."""
    name: str
    file: BinaryIO
    status: int = 200
    problem: str | None = None


class _BodyTooLarge(Exception):
    pass


class _Parser(MultiPartParser):
    spool_max_size = SPOOL_BYTES  # starlette's default, 1 MiB, would let 64 uploads of 8 files hold 512 MiB


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


def upload_name(filename: str | None, n: int) -> str:
    """The upload's file name without any directory part (clients send what they like), its control characters
    written as escapes as predict writes file names (io.safe_name), so that ``image`` and the log lines stay on one
    printable line; ``upload-N`` when no name is left."""
    name = safe_name(PurePosixPath((filename or "").replace("\\", "/")).name[:200])
    return name if name.strip(" .") else f"upload-{n}"


@contextlib.asynccontextmanager
async def read_parts(request: Request, limits: Limits) -> AsyncIterator[list[Part]]:
    """The request's file parts, in order; their files are closed when the block ends. Raises ApiError for a
    request-level problem and starlette's ClientDisconnect when the client goes away mid-body."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ApiError(415, f"expected a multipart/form-data upload of image files, got {ctype or 'no content type'}")
    body_limit = limits.max_files * limits.max_file_bytes + MULTIPART_SLACK
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > body_limit:
        raise ApiError(413, f"request body of {int(length):,} bytes > the limit {body_limit:,} "
                            f"({limits.max_files} files of at most {limits.max_file_bytes:,} bytes)")
    limited = Request(request.scope, _limited(request.receive, body_limit))
    parser = _Parser(request.headers, limited.stream(), max_files=limits.max_files, max_fields=16)
    try:
        form = await parser.parse()
    except _BodyTooLarge:
        raise ApiError(413, f"request body over the limit of {body_limit:,} bytes") from None
    except MultiPartException as e:
        if e.message.startswith("Too many files"):
            raise ApiError(413, f"too many files: at most {limits.max_files} per request") from None
        raise ApiError(400, f"malformed multipart body: {e.message}") from None
    try:
        files = [v for _, v in form.multi_items() if not isinstance(v, str)]
        if not files:
            raise ApiError(400, "no image files in the request: send them as multipart file fields, "
                                "e.g. curl -F files=@photo.jpg")
        parts = []
        for n, f in enumerate(files):
            part = Part(upload_name(f.filename, n), f.file)
            declared = (f.content_type or "").lower()
            if declared and not declared.startswith(_IMAGE_TYPES):
                part.status, part.problem = 415, f"content type {declared} is not an image"
            elif f.size is not None and f.size > limits.max_file_bytes:
                part.status, part.problem = 413, f"{f.size:,} bytes > the limit {limits.max_file_bytes:,}"
            parts.append(part)
        yield parts
    finally:
        await form.close()
