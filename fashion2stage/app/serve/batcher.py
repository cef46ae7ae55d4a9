"""Batching across requests: images from concurrent requests wait in one bounded queue and go to the model together.

    request handler --submit(k jobs)--> asyncio.Queue (at most ``queue_size`` jobs) --> batcher task
    batcher task: first job, then whatever else arrives within ``max_wait_ms``, up to ``max_batch`` jobs
              --> ``run(jobs)`` in one dedicated worker thread --> each request's futures resolved

A job is whatever ``run`` takes (the service queues undecoded uploads and decodes them inside ``run``, so that at
most ``max_batch`` decoded images exist at a time). A job is admitted only while fewer than ``queue_size`` are
pending (waiting or in the model); otherwise ``submit`` raises :class:`QueueFull` at once and the caller answers
503. The model runs in a single thread, so it is never called concurrently, and the event loop stays free to read
uploads meanwhile. A job whose future was cancelled (its client left) is dropped before ``run``.
"""
from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

RunFn = Callable[[list[Any]], list[Any]]  # jobs -> one result per job, in order


class QueueFull(Exception):
    """No room for the images of a request. ``retry_after`` is a guess, in whole seconds, of when there will be."""

    def __init__(self, retry_after: int):
        super().__init__(f"server busy: retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Item:
    job: Any
    future: asyncio.Future


class Batcher:
    """Gathers images from concurrent requests into model batches. Start it inside the event loop (``start``)."""

    def __init__(self, run: RunFn, max_batch: int = 8, max_wait_ms: float = 5.0, queue_size: int = 32):
        if max_batch < 1 or queue_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and queue_size must be >= 1, max_wait_ms >= 0")
        self.run_jobs = run
        self.max_batch, self.max_wait, self.queue_size = max_batch, max_wait_ms / 1000.0, queue_size
        # one thread: the model is never run concurrently with itself (torch/ONNX use their own intra-op threads)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fashion2stage-model")
        self.pending = 0  # jobs admitted and not yet answered (queued or in the model)
        self.seconds_per_image = 1.0  # running average, for Retry-After
        self.batches, self.images, self.model_seconds = 0, 0, 0.0  # totals, for /healthz and the load test
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fashion2stage-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.worker.shutdown(wait=False, cancel_futures=True)

    def free(self) -> int:
        return self.queue_size - self.pending

    def retry_after(self) -> int:
        """Seconds until the images now pending are likely done: when a client may usefully try again."""
        return max(1, math.ceil(self.pending * self.seconds_per_image))

    def submit(self, jobs: list) -> list[asyncio.Future]:
        """Queue all jobs of one request, or none (QueueFull). Await the returned futures for the results; cancel them
        when the answer is no longer wanted."""
        if self._queue is None:
            raise RuntimeError("Batcher.start() was not called")
        if len(jobs) > self.free():
            raise QueueFull(self.retry_after())
        loop = asyncio.get_running_loop()
        futures = []
        for job in jobs:
            item = _Item(job, loop.create_future())
            self._queue.put_nowait(item)  # cannot raise: pending <= queue_size bounds the queue's length too
            self.pending += 1
            futures.append(item.future)
        return futures

    async def _next_batch(self) -> list[_Item]:
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                batch.append(self._queue.get_nowait() if left <= 0 else
                             await asyncio.wait_for(self._queue.get(), left))
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            live = [it for it in batch if not it.future.done()]  # a request whose client left needs no answer
            try:
                if live:
                    t0 = time.perf_counter()
                    results = await loop.run_in_executor(self.worker, self.run_jobs, [it.job for it in live])
                    seconds = time.perf_counter() - t0
                    self.seconds_per_image = 0.8 * self.seconds_per_image + 0.2 * seconds / len(live)
                    self.batches, self.images, self.model_seconds = (self.batches + 1, self.images + len(live),
                                                                     self.model_seconds + seconds)
                    for it, result in zip(live, results):
                        if not it.future.done():
                            it.future.set_result(result)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001  (a failure of run_jobs fails this batch's requests, not the server)
                for it in live:
                    if not it.future.done():
                        it.future.set_exception(e)
            finally:
                self.pending -= len(batch)
                del batch, live  # the jobs (uploads) go as soon as they are answered
