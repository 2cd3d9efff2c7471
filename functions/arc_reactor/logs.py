"""Structured logs: one JSON object a line on stderr, in the shape Cloud Logging reads from Cloud Run
(`severity`, `message`, `logging.googleapis.com/labels`). A record's `run_id` becomes a label, so
`labels.run_id="..."` finds every line of a run; `event` names what happened, for log-based metrics."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_LABEL_KEYS = ("run_id", "job_name", "pipeline")
_EXTRA_KEYS = ("event", "from_status", "to_status", "source", "error_code", "detail", "bucket", "object")
_configured = False


class JsonFormatter(logging.Formatter):
    """Format a record as one Cloud Logging JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON."""
        out: dict[str, Any] = {
            "severity": record.levelname if record.levelname != "WARNING" else "WARNING",
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        labels = {k: str(getattr(record, k)) for k in _LABEL_KEYS if getattr(record, k, None)}
        if labels:
            out["logging.googleapis.com/labels"] = labels
            out.update(labels)
        for key in _EXTRA_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: int = logging.INFO, path: Path | None = None) -> None:
    """Send the package's logs as JSON lines to stderr, or to `path` (idempotent: the first call wins)."""
    global _configured  # noqa: PLW0603 - configure the handler once per process
    if _configured:
        return
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    handler: logging.Handler = (
        logging.FileHandler(path, encoding="utf-8") if path is not None else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(JsonFormatter())
    for name in ("arc_reactor", *(("werkzeug",) if path is not None else ())):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    _configured = True
