"""The bounded inference queue: a small thread pool that admits at most ``workers + queue_size`` jobs at once.

Inference runs here so the event loop never waits on a model, and a burst of uploads is refused (``QueueFull``,
answered 503 + Retry-After) instead of piling up.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    """Every worker is busy and the waiting line is full; ``retry_after`` is a suggested wait in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("the server is busy")
        self.retry_after = retry_after


class InferenceQueue:
    """A thread pool that admits at most ``workers + queue_size`` jobs at once and refuses the rest."""

    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cxrseg-infer")
        self._count_lock = threading.Lock()
        self._in_flight = 0
        self._mean_s = 1.0  # running mean of a job's duration, for Retry-After

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def is_full(self) -> bool:
        return self._in_flight >= self.capacity

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue's length of jobs spread over the workers."""
        return max(1, math.ceil(self._mean_s * self.capacity / self.workers))

    def _admit(self) -> None:
        with self._count_lock:
            if self.is_full():
                raise QueueFull(self.retry_after())
            self._in_flight += 1

    def _release(self, _: Future) -> None:
        with self._count_lock:
            self._in_flight -= 1

    def _timed(self, fn: Callable[..., T], *args: Any) -> T:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._mean_s = 0.8 * self._mean_s + 0.2 * (time.perf_counter() - start)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a worker and await it; raises :class:`QueueFull` when no slot is free.

        The slot is released when the job really ends, so a client that hangs up mid-job still counts.
        """
        self._admit()
        try:
            job = self._pool.submit(self._timed, fn, *args)
        except BaseException:
            self._release(None)  # type: ignore[arg-type]
            raise
        job.add_done_callback(self._release)
        return await asyncio.wrap_future(job)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
