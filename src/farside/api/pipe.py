"""A request body as a blocking file, for work that reads a stream on a worker thread.

The event loop feeds the body's pieces into a small queue; the worker reads them. Memory stays
bounded (at most ``depth`` pieces wait), and when the worker stops early (a refused upload) the
feeder stops too, draining at most ``drain_limit`` more bytes so that the client gets its answer
instead of a reset connection.
"""

from __future__ import annotations

import queue
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")
_DEPTH = 32
_DRAIN_LIMIT = 256 << 20
_POLL_S = 0.25


class BodyPipe:
    def __init__(self, depth: int = _DEPTH) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._item = b""
        self._pos = 0
        self._eof = False
        self.abandoned = False

    def read(self, n: int = -1) -> bytes:
        """At most ``n`` bytes (all of one queued piece when n < 0); b"" at the end."""
        while self._pos >= len(self._item):
            if self._eof:
                return b""
            item = self._queue.get()
            if item is None:
                self._eof = True
                return b""
            self._item, self._pos = item, 0
        end = len(self._item) if n < 0 else self._pos + n
        out = self._item[self._pos : end]
        self._pos += len(out)
        return out

    def _put(self, item: bytes | None) -> bool:
        while not self.abandoned:
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    async def feed(self, stream: AsyncIterator[bytes]) -> None:
        drained = 0
        async for piece in stream:
            if self.abandoned:
                drained += len(piece)
                if drained > _DRAIN_LIMIT:
                    return
                continue
            if not piece:
                continue
            try:
                self._queue.put_nowait(piece)
            except queue.Full:
                await anyio.to_thread.run_sync(self._put, piece)
        if not self.abandoned:
            await anyio.to_thread.run_sync(self._put, None)


async def consume(stream: AsyncIterator[bytes], work: Callable[[BodyPipe], T]) -> T:
    """Run ``work(pipe)`` on a worker thread while the body streams into the pipe."""
    pipe = BodyPipe()
    result: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work(pipe))
        except BaseException as exc:  # re-raised below, outside the task group's exception group
            failed.append(exc)
        finally:
            pipe.abandoned = True

    async with anyio.create_task_group() as group:
        group.start_soon(pipe.feed, stream)
        await anyio.to_thread.run_sync(run)
    if failed:
        raise failed[0]
    return result[0]
