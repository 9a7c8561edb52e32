"""Exceptions of the agent, one tree.

EdgemonError
├── ConfigError          configuration unusable; carries every problem found
├── DbcError             a DBC file or signal map cannot be loaded
├── SourceError          a frame or fix source failed (device gone, bad URL)
├── MonitorError         a monitor definition is invalid; carries every problem found
├── OutboxError          the on-disk outbox cannot be opened or written
└── ObdError             an OBD-II answer is malformed, or the diagnostic link failed
    └── NegativeAnswer   an ECU refused a request (``code``: 0x21 busy, 0x31 out of range...)

Adapters translate library exceptions (cantools, python-can, pyserial, paho, sqlite3) into these
at the edge, chaining the original with ``raise ... from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem, located by a JSON-path-like string (``$.triggerParam.boolExp``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class EdgemonError(Exception):
    """Root of every error the agent raises on purpose."""


class _ProblemsError(EdgemonError):
    def __init__(self, problems: list[Problem] | tuple[Problem, ...], summary: str = "") -> None:
        self.problems = tuple(problems)
        text = summary or "; ".join(str(p) for p in self.problems)
        super().__init__(text)


class ConfigError(_ProblemsError):
    """The configuration cannot be used; ``problems`` lists every reason."""


class MonitorError(_ProblemsError):
    """A monitor definition is invalid; ``problems`` lists every reason."""


class DbcError(EdgemonError):
    """A DBC file or a signal map cannot be loaded."""


class SourceError(EdgemonError):
    """A frame or fix source failed."""


class OutboxError(EdgemonError):
    """The on-disk outbox cannot be opened or written."""


class ObdError(EdgemonError):
    """An OBD-II answer cannot be read, or the diagnostic link failed."""


class NegativeAnswer(ObdError):
    """An ECU answered 0x7F: ``service`` refused with negative response ``code``."""

    def __init__(self, service: int, code: int) -> None:
        self.service = service
        self.code = code
        super().__init__(f"service {service:02X} refused with code {code:02X}")
