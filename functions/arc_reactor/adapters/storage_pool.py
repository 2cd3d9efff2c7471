"""One bounded thread pool per process for a submission's independent storage requests (reading a bundle's
files, the nf-schema `exists` checks). Its threads are made once, not per submission, and concurrent
submissions share its bound, so a burst never has more requests in flight than the storage client's
connection pool keeps open (storage.py sizes that pool from STORAGE_WORKERS)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

STORAGE_WORKERS = 8
_PREFIX = "arc-storage"

_T = TypeVar("_T")
_R = TypeVar("_R")
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _shared() -> ThreadPoolExecutor:
    global _pool  # noqa: PLW0603 - one pool per process, made on first use
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=STORAGE_WORKERS, thread_name_prefix=_PREFIX)
        return _pool


def storage_map(fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
    """`[fn(x) for x in items]`, run on the shared pool, in order; the first exception is raised after
    every call has finished (none is left running). Called from a pool thread it runs inline, so a
    nested call can never wait on the threads it occupies."""
    todo = list(items)
    if len(todo) <= 1 or threading.current_thread().name.startswith(_PREFIX):
        return [fn(x) for x in todo]
    futures = [_shared().submit(fn, x) for x in todo]
    errors = [f.exception() for f in futures]  # waits for all of them
    for error in errors:
        if error is not None:
            raise error
    return [f.result() for f in futures]
