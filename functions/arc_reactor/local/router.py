"""Deliver CloudEvents to functions over HTTP the way Eventarc does: binary content mode, at least once,
redelivered with backoff on any non-2xx answer, a bounded number of times, then dead-lettered (logged).

Like Eventarc, each trigger (destination URL) has its own queue and workers, so a burst of inbox events
cannot starve Batch notifications. Header values are percent-encoded as the CloudEvents HTTP binding
requires (a `subject` naming an object with non-ASCII letters or a newline is still a valid header; our
handlers read object names from the JSON data, never from headers). No failure is silent: an exception
anywhere in a delivery is logged with its traceback and counted as a failed attempt, and a delivery that
never succeeds ends as a dead letter with its reason.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger(__name__)

# CloudEvents HTTP binding, 3.1.3.2: printable ASCII (U+0021-U+007E) stays as it is, except `"` and `%`;
# space, every other character and every non-ASCII character is sent as its UTF-8 bytes, each %XX.
_KEPT = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "%"}


def encode_header_value(value: str) -> str:
    """A CloudEvents attribute value as an HTTP header value, percent-encoded as the binding says."""
    return "".join(c if c in _KEPT else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in value)


def binary_headers(attrs: Mapping[str, str]) -> dict[str, str]:
    """The headers of a binary-mode CloudEvent: `ce-<attribute>` for each, Content-Type for the data."""
    headers = {f"ce-{k}": encode_header_value(str(v)) for k, v in attrs.items() if k != "datacontenttype"}
    headers["Content-Type"] = attrs.get("datacontenttype", "application/json")
    return headers


@dataclass
class DeliveryStats:
    """Counts of what the router did, for tests and the demo's summary."""

    delivered: int = 0
    redelivered: int = 0
    failed_attempts: int = 0  # attempts that raised (a bug or an unreachable function), not just non-2xx
    dead_lettered: int = 0
    dead_letters: list[dict[str, Any]] = field(default_factory=list)


class EventRouter:
    """Posts CloudEvents to function URLs from worker threads (never from the caller's thread), one queue
    per destination URL."""

    def __init__(
        self,
        attempts: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 2.0,
        timeout: float = 60.0,
        workers: int = 4,
    ) -> None:
        self.attempts, self.backoff, self.max_backoff, self.timeout = attempts, backoff, max_backoff, timeout
        self.workers = workers
        self.stats = DeliveryStats()
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._session.trust_env = False  # loopback only: never route through a proxy from the environment

    def _pool(self, url: str) -> ThreadPoolExecutor:
        with self._lock:
            if url not in self._pools:
                name = f"event-router-{len(self._pools)}"
                self._pools[url] = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=name)
            return self._pools[url]

    def post(self, url: str, attrs: Mapping[str, str], data: Mapping[str, Any]) -> Future[int]:
        """Queue one CloudEvent for delivery; the future gives the final HTTP status (0 if never answered)."""
        future = self._pool(url).submit(self.deliver, url, dict(attrs), dict(data))
        future.add_done_callback(_log_crash)
        return future

    def deliver(self, url: str, attrs: dict[str, str], data: dict[str, Any]) -> int:
        """Deliver now, retrying a bounded number of times; return the last HTTP status (0: no answer)."""
        status, delay, reason = 0, self.backoff, ""
        try:
            headers, body = binary_headers(attrs), json.dumps(data)
        except (TypeError, ValueError) as exc:  # a malformed event can never be delivered: dead-letter it now
            log.exception("event %s cannot be encoded", attrs.get("id"), extra={"event": "event_unencodable"})
            return self._dead_letter(url, attrs, 0, f"cannot encode the event: {exc}")
        for attempt in range(1, self.attempts + 1):
            try:
                status = self._session.post(url, data=body, headers=headers, timeout=self.timeout).status_code
                reason = f"HTTP {status}"
            except Exception as exc:
                self._count_failed_attempt()
                log.warning(
                    "delivery of %s to %s failed: %s: %s", attrs.get("id"), url, type(exc).__name__, exc,
                    exc_info=not isinstance(exc, requests.RequestException),
                    extra={"event": "event_delivery_failed"},
                )  # fmt: skip
                status, reason = 0, f"{type(exc).__name__}: {exc}"
            if 200 <= status < 300:
                with self._lock:
                    self.stats.delivered += 1
                return status
            if attempt < self.attempts:
                with self._lock:
                    self.stats.redelivered += 1
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
        return self._dead_letter(url, attrs, status, reason)

    def _count_failed_attempt(self) -> None:
        with self._lock:
            self.stats.failed_attempts += 1

    def _dead_letter(self, url: str, attrs: Mapping[str, str], status: int, reason: str) -> int:
        with self._lock:
            self.stats.dead_lettered += 1
            self.stats.dead_letters.append(
                {"url": url, "attributes": dict(attrs), "status": status, "reason": reason}
            )
        log.error(
            "event %s dead-lettered after %d attempts (last: %s)", attrs.get("id"), self.attempts, reason,
            extra={"event": "event_dead_lettered"},
        )  # fmt: skip
        return status

    def close(self) -> None:
        """Finish queued deliveries and stop the workers."""
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=False)
        self._session.close()


def _log_crash(future: Future[int]) -> None:
    """Nothing a delivery raises may die unseen in its future (deliver catches all; this is the backstop)."""
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("event delivery crashed: %s", exc, exc_info=exc, extra={"event": "event_delivery_crashed"})
