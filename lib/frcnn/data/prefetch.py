"""A background thread that keeps the next few minibatches ready.

``Prefetcher(produce)`` calls ``produce()`` over and over in a daemon thread, keeping up to
``depth`` results in a queue; ``get()`` returns them in order (the same order as calling
``produce()`` directly, so a seeded source gives the same minibatches either way) and
re-raises, in the caller's thread, an exception ``produce`` raised.  ``close()`` stops the
thread and waits for it briefly; it also runs when the Prefetcher is garbage collected and
at interpreter exit, and the thread is a daemon, so nothing hangs at exit.  OpenCV and numpy
release the GIL while decoding and resizing, which is where the time goes.
"""
from __future__ import annotations

import atexit
import queue
import threading
import weakref
from typing import Any, Callable

_LIVE: "weakref.WeakSet[Prefetcher]" = weakref.WeakSet()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def _work(produce: Callable[[], Any], out: queue.Queue, stop: threading.Event) -> None:
    # holds no reference to the Prefetcher, so dropping it stops the thread
    while not stop.is_set():
        try:
            item: Any = produce()
        except BaseException as e:  # handed to the consumer
            item = _Failure(e)
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                break
            except queue.Full:
                continue
        if isinstance(item, _Failure):
            return


class Prefetcher:
    """See the module docstring."""

    def __init__(self, produce: Callable[[], Any], depth: int = 2, name: str = "prefetch"):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=_work, args=(produce, self._queue, self._stop),
                                        name=name, daemon=True)
        self._finalizer = weakref.finalize(self, _shutdown, self._stop, self._thread)
        _LIVE.add(self)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def get(self, timeout: float | None = None) -> Any:
        """The next result; re-raises the producer's exception."""
        if self._stop.is_set():
            raise RuntimeError("the prefetcher is closed")
        while True:
            try:
                item = self._queue.get(timeout=0.5 if timeout is None else timeout)
                break
            except queue.Empty:
                if timeout is not None:
                    raise TimeoutError(f"no minibatch within {timeout} s") from None
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the prefetch thread stopped") from None
        if isinstance(item, _Failure):
            self.close()
            raise item.error
        return item

    def close(self) -> None:
        """Stop the thread (idempotent)."""
        self._finalizer()


def _shutdown(stop: threading.Event, thread: threading.Thread, wait: float = 2.0) -> None:
    stop.set()
    if thread is not threading.current_thread():
        thread.join(wait)


@atexit.register
def _close_all() -> None:
    for p in list(_LIVE):
        p.close()
