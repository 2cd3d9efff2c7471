"""Deliver CloudEvents to functions over HTTP the way Eventarc does: binary content mode, at least once,
redelivered with backoff on any non-2xx answer, a bounded number of times, then dead-lettered (logged)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger(__name__)


@dataclass
class DeliveryStats:
    """Counts of what the router did, for tests and the demo's summary."""

    delivered: int = 0
    redelivered: int = 0
    dead_lettered: int = 0
    dead_letters: list[dict[str, Any]] = field(default_factory=list)


class EventRouter:
    """Posts CloudEvents to function URLs from worker threads (never from the caller's thread)."""

    def __init__(
        self,
        attempts: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 2.0,
        timeout: float = 60.0,
        workers: int = 4,
    ) -> None:
        self.attempts, self.backoff, self.max_backoff, self.timeout = attempts, backoff, max_backoff, timeout
        self.stats = DeliveryStats()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="event-router")
        self._session = requests.Session()
        self._session.trust_env = False  # loopback only: never route through a proxy from the environment

    def post(self, url: str, attrs: Mapping[str, str], data: Mapping[str, Any]) -> Future[int]:
        """Queue one CloudEvent for delivery; the future gives the final HTTP status (0 if unreachable)."""
        return self._pool.submit(self.deliver, url, dict(attrs), dict(data))

    def deliver(self, url: str, attrs: dict[str, str], data: dict[str, Any]) -> int:
        """Deliver now, retrying a bounded number of times; return the last HTTP status."""
        headers = {f"ce-{k}": str(v) for k, v in attrs.items() if k != "datacontenttype"}
        headers["Content-Type"] = attrs.get("datacontenttype", "application/json")
        body = json.dumps(data)
        status, delay = 0, self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                status = self._session.post(url, data=body, headers=headers, timeout=self.timeout).status_code
            except requests.RequestException as exc:
                log.warning("delivery of %s to %s failed: %s", attrs.get("id"), url, exc)
                status = 0
            if 200 <= status < 300:
                self.stats.delivered += 1
                return status
            if attempt < self.attempts:
                self.stats.redelivered += 1
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
        self.stats.dead_lettered += 1
        self.stats.dead_letters.append({"url": url, "attributes": attrs, "status": status})
        log.error(
            "event %s dead-lettered after %d attempts (last status %s)",
            attrs.get("id"),
            self.attempts,
            status,
            extra={"event": "event_dead_lettered"},
        )
        return status

    def close(self) -> None:
        """Finish queued deliveries and stop the workers."""
        self._pool.shutdown(wait=True, cancel_futures=False)
        self._session.close()
