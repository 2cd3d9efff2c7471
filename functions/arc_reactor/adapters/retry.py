"""The one retry policy of the package: exponential backoff with full jitter, bounded by attempts and time.

Full jitter (sleep a uniform random time in [0, min(cap, base * 2**n)]) spreads the retries of many
concurrent function instances so they do not hammer a recovering API in lockstep.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_RETRY_ON: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)


def backoff_delay(attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """The full-jitter delay before retry number `attempt` (0-based)."""
    return rand() * min(cap, base * 2.0**attempt)


def retry_call(
    fn: Callable[[], T],
    *,
    attempts: int = 5,
    base: float = 0.2,
    cap: float = 5.0,
    deadline: float = 30.0,
    retry_on: tuple[type[BaseException], ...] = DEFAULT_RETRY_ON,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call `fn` until it returns, retrying `retry_on` errors at most `attempts` times in all and never
    past `deadline` seconds; the last error is re-raised with a note saying how many attempts ran."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    start = clock()
    for attempt in range(attempts):
        try:
            return fn()
        except retry_on as exc:
            remaining = deadline - (clock() - start)
            if attempt + 1 >= attempts or remaining <= 0:
                exc.add_note(f"gave up after {attempt + 1} attempt(s) in {clock() - start:.2f} s")
                raise
            delay = min(backoff_delay(attempt, base, cap), remaining)
            log.info(
                "retrying after %s (attempt %d of %d, sleeping %.2f s)",
                type(exc).__name__,
                attempt + 1,
                attempts,
                delay,
                extra={"event": "retry", "detail": {"error": type(exc).__name__, "attempt": attempt + 1}},
            )
            sleep(delay)
    raise AssertionError("unreachable")  # the loop either returns or raises
