"""The service's limits, in a module of their own so that the CLI can show their defaults without loading FastAPI."""
from __future__ import annotations

from dataclasses import dataclass

# What the memory bound is made of (docs/serve.md, "Memory", has the measurements): a decoded photo is 3 bytes per
# pixel; one photo through the detector takes up to WORKING_BYTES_PER_PIXEL more (measured 48-51 on ONNX Runtime:
# its full-size float input and normalised copy), which also covers decoding one (RGBA PNG: about 14)
WORKING_BYTES_PER_PIXEL = 64
MODEL_BYTES = 128 * 1024 * 1024  # the models' working memory on a batch whatever its photos' size (measured: 70 MB)
SPOOL_BYTES = 64 * 1024  # an uploaded file past this waits in a temporary file, not in memory
CONNECTION_BYTES = 352 * 1024  # one connection's buffers: a 256 KiB socket read + 64 KiB body + 16 KiB headers, about


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server, how much work may wait, how long a client may take. Each is a
    ``serve`` flag; docs/serve.md turns them into the server's memory bound."""

    max_file_bytes: int = 10 * 1024 * 1024
    max_files: int = 8  # per request
    max_pixels: int = 25_000_000  # per image, checked from its header before decoding
    queue_size: int = 32  # images waiting or in the model (their uploads stay spooled until their batch is decoded)
    max_batch: int = 8  # images per model call: at most this many decoded images are alive at once
    max_wait_ms: float = 5.0  # how long the first image of a batch waits for others
    max_uploads: int = 64  # POST /v1/predict requests being read or answered at once; past it: 503
    max_connections: int = 256  # open connections of any kind; past it: 503 and the connection is closed
    read_timeout_s: float = 60.0  # a request's headers and body must arrive within this; else 408
    shutdown_timeout_s: float = 5.0  # on SIGTERM, requests still open after this are dropped

    def __post_init__(self):
        if min(self.max_file_bytes, self.max_files, self.max_pixels, self.queue_size, self.max_batch,
               self.max_uploads, self.max_connections) < 1:
            raise ValueError("every limit must be at least 1")
        if not (self.read_timeout_s > 0 and self.shutdown_timeout_s >= 0 and self.max_wait_ms >= 0):
            raise ValueError("read_timeout_s must be > 0, shutdown_timeout_s and max_wait_ms >= 0")
        if self.max_files > self.queue_size:
            raise ValueError(f"max_files {self.max_files} > queue_size {self.queue_size}: such a request could "
                             "never fit")
        if self.max_uploads > self.max_connections:
            raise ValueError(f"max_uploads {self.max_uploads} > max_connections {self.max_connections}: every "
                             "upload holds a connection")

    def peak_bytes(self) -> int:
        """The most memory requests can add to the server's resting size, in bytes: the decoded images of one batch,
        one photo in the detector, the models' other working memory, the spooled parts of the uploads being read
        and the connections' buffers."""
        return ((3 * self.max_batch + WORKING_BYTES_PER_PIXEL) * self.max_pixels + MODEL_BYTES
                + self.max_uploads * self.max_files * SPOOL_BYTES + self.max_connections * CONNECTION_BYTES)
