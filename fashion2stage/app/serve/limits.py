"""The service's limits, in a module of their own so that the CLI can show their defaults without loading FastAPI."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server, and how much work may wait. Each is a ``serve`` flag."""

    max_file_bytes: int = 10 * 1024 * 1024
    max_files: int = 8  # per request
    max_pixels: int = 25_000_000  # per image, checked from its header before decoding
    queue_size: int = 32  # images waiting or in the model; bounds memory at about queue_size * max_pixels * 3 bytes
    max_batch: int = 8  # images per model call
    max_wait_ms: float = 5.0  # how long the first image of a batch waits for others

    def __post_init__(self):
        if min(self.max_file_bytes, self.max_files, self.max_pixels, self.queue_size, self.max_batch) < 1:
            raise ValueError("every limit must be at least 1")
        if self.max_files > self.queue_size:
            raise ValueError(f"max_files {self.max_files} > queue_size {self.queue_size}: such a request could "
                             "never fit")
