"""How entry points answer the event system: return = acknowledge, raise = redeliver.

Malformed events and permanent failures are logged and acknowledged (a redelivery cannot fix them);
transient failures (database or API unavailable) propagate, so Eventarc redelivers with backoff."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from arc_reactor.errors import PermanentError
from arc_reactor.logs import setup_logging

log = logging.getLogger("arc_reactor.delivery")


@contextmanager
def acknowledging_permanent_errors(entry_point: str) -> Iterator[None]:
    """Run an event handler: log and swallow permanent errors, let everything else propagate."""
    setup_logging()
    try:
        yield
    except PermanentError as exc:
        log.error(
            "%s: event acknowledged without effect: %s",
            entry_point,
            exc,
            extra={"event": "event_rejected", "error_code": exc.code},
        )
