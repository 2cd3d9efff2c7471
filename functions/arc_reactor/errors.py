"""One error taxonomy. Transient errors are raised to the event system (HTTP 500 -> redelivery);
permanent ones are recorded on the run and the event is acknowledged."""

from __future__ import annotations

from dataclasses import dataclass, field


class ArcError(Exception):
    """Base of every error this package raises on purpose."""


class TransientError(ArcError):
    """Worth retrying: the database or an API was unavailable. Entry points let it propagate."""


class PermanentError(ArcError):
    """Retrying cannot help. Entry points record it and return normally."""

    code = "permanent_error"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a bundle: the file it is in, where, and what."""

    file: str
    message: str
    line: int | None = None
    field: str | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form, without empty keys."""
        out: dict[str, object] = {"file": self.file, "message": self.message}
        if self.line is not None:
            out["line"] = self.line
        if self.field is not None:
            out["field"] = self.field
        return out

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line is not None else "")
        what = f"{self.field}: " if self.field else ""
        return f"{where}: {what}{self.message}"


@dataclass
class BundleInvalid(PermanentError):
    """A bundle failed validation; `problems` lists every problem found, not just the first."""

    problems: list[Problem] = field(default_factory=list)
    # Exceptions a check raised instead of answering (our faults, not the user's), by file: the caller
    # logs them with their tracebacks; each is also a problem naming its file.
    faults: list[tuple[str, BaseException]] = field(default_factory=list)
    code = "invalid_bundle"

    def __str__(self) -> str:
        return "; ".join(str(p) for p in self.problems) or "invalid bundle"


class OrchestrationError(PermanentError):
    """The orchestrator cannot go on; `code` becomes the run's error_code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class BadEvent(PermanentError):
    """An event that cannot be parsed; acknowledged and logged, never retried."""

    code = "bad_event"


class NotFound(ArcError):
    """A run that does not exist."""


class DependencyRefused(ArcError):
    """A service we depend on refused us (permission denied, no credentials): not the caller's fault and not
    fixed by retrying; the API answers 502 naming the service."""


class StorageObjectMissing(ArcError):
    """A Cloud Storage object that does not exist (the adapter's translation of NOT_FOUND)."""


class StorageForbidden(ArcError):
    """Cloud Storage refused the call for permissions (the adapter's translation of 403)."""


class Conflict(ArcError):
    """The request conflicts with the run's state (e.g. cancelling a finished run)."""


# Batch adapter errors (sprint plan 5.1)
class BatchError(ArcError):
    """Base of Batch adapter errors."""


class BatchQuotaExceededError(BatchError, PermanentError):
    """Batch refused the job for quota (RESOURCE_EXHAUSTED)."""

    code = "quota_exceeded"


class BatchPermissionError(BatchError, PermanentError):
    """Batch refused the call for permissions (PERMISSION_DENIED)."""

    code = "permission_denied"


class BatchJobCreationError(BatchError, PermanentError):
    """Batch refused the job spec (INVALID_ARGUMENT and friends)."""

    code = "job_creation_failed"


class BatchJobNotFoundError(BatchError):
    """The job does not exist (NOT_FOUND)."""


class BatchUnavailableError(BatchError, TransientError):
    """Batch kept failing with a transient error after the bounded retries."""
