"""Exceptions of the backend, one tree.

BackendError
├── ConfigError          configuration unusable; carries every problem found
├── StoreError           the store cannot be opened, migrated or written
├── PayloadError         outside JSON refused by the guard (too large, too deep, a number too
│                        long, not UTF-8, a lone surrogate); ``reason`` names the counter
├── IngestError          an MQTT message is unusable (malformed, VIN mismatch); counted and acked
├── ApiProblem           an API request is refused (status + problems), rendered as ``xError``
└── DeliveryError        one webhook attempt failed; ``retryable`` says whether to try again

Adapters translate library exceptions (sqlite3, aiohttp, paho, tomllib) into these at the edge,
chaining the original with ``raise ... from exc``.
"""

from __future__ import annotations

from agent.errors import Problem


class BackendError(Exception):
    """Root of every error the backend raises on purpose."""


class ConfigError(BackendError):
    """The configuration cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class StoreError(BackendError):
    """The store cannot be opened, migrated or written."""


class PayloadError(BackendError):
    """Outside JSON refused before or while decoding it (``backend.ingest.guard``).

    ``reason`` is one of ``too_large``, ``not_utf8``, ``not_json``, ``too_deep``,
    ``number_too_long``, ``number_out_of_range``, ``bad_unicode``.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class IngestError(BackendError):
    """An incoming MQTT message cannot be accepted. ``reason`` names the counter it bumps."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class UnmatchedEvent(IngestError):
    """An event of a monitor the backend does not know: most often a monitor from the
    vehicle's own local ``monitors_file``, whose events have nowhere to go here."""

    def __init__(self, monitor_id: str, vin: str) -> None:
        self.monitor_id = monitor_id
        self.vin = vin
        super().__init__("unknown_monitor", f"no monitor {monitor_id}")


class ApiProblem(BackendError):
    """An API request is refused with an HTTP status and every problem found."""

    def __init__(
        self, status: int, message: str, problems: list[Problem] | tuple[Problem, ...] = ()
    ) -> None:
        self.status = status
        self.message = message
        self.problems = tuple(problems)
        super().__init__(message)


class DeliveryError(BackendError):
    """One webhook attempt failed.

    ``retryable`` is False when trying again cannot help (410 Gone, a forbidden plain-http
    target); ``retry_after`` carries a server's Retry-After (seconds) on 429/503.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)
