"""The monitor model: a Stellantis ``MonitorParameter`` parsed and validated into frozen objects.

Shared by the agent (which evaluates it) and the backend (which stores it and delivers its
events). ``parse_monitor`` reports every problem at once, each with its JSON path, and accepts
the quirks of the published docs (reference §7): ``circle`` for ``place``; ``occurence`` or
``occurrence``, as an object or a bare day array; ``attributres``; ``maxRetryNumber``; a callback
with or without the ``webhook`` wrapper; ``$vin``/``$Vin`` in any case; ``time.zone`` and
``bool.exp``; missing closing parentheses at the end of ``boolExp`` (closed, with a warning).
The deprecated v2 ``triggerParam`` (``timeZoneTriggers`` + ``dataTriggers``, all ANDed) is read
with a warning; mixing it with ``triggers``/``boolExp`` is a problem.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from agent.errors import Problem
from agent.model import SignalInfo
from agent.monitors.data import DataTrigger, Previous
from agent.monitors.expr import And, Expr, Name
from agent.monitors.fields import Report, loads_monitor
from agent.monitors.limits import check_tree
from agent.monitors.schedule import DailyWindow, OnceWindow, TimeTrigger
from agent.monitors.zone import Area, Circle, FixGate, ZoneTrigger

__all__ = [
    "Area",
    "Attribute",
    "BatchNotify",
    "Catalog",
    "Circle",
    "DailyWindow",
    "DataTrigger",
    "FixGate",
    "Monitor",
    "MonitorParse",
    "OnceWindow",
    "Previous",
    "RetryPolicy",
    "SubscribeParam",
    "TimeTrigger",
    "Trigger",
    "Webhook",
    "ZoneTrigger",
    "loads_monitor",
    "monitor_hash",
    "parse_monitor",
]

Trigger = ZoneTrigger | TimeTrigger | DataTrigger

STATUSES = ("Running", "Paused", "Failed")
ATTRIBUTE_TYPES = ("Header", "Body", "Query")
RETRY_POLICIES = ("None", "Bounded", "Always")
# Variables substituted in attribute values (``$vin``), matched case-insensitively (§7.10).
VARIABLES = frozenset(
    {"vin", "monitorid", "fleetid", "vid", "callbackid", "callbacklabel", "monitorlabel"}
)


class Catalog(Protocol):
    """What a vehicle can provide (``agent.can.dbc.SignalCatalog`` implements it)."""

    def describe(self, name: str) -> SignalInfo | None: ...


@dataclass(frozen=True, slots=True)
class Attribute:
    type: str  # "Header" | "Body" | "Query"
    key: str
    value: str  # a literal, or "$name" of a variable (any case)

    @property
    def variable(self) -> str | None:
        """The lower-cased variable name when the value is a known ``$variable``."""
        if self.value.startswith("$") and self.value[1:].lower() in VARIABLES:
            return self.value[1:].lower()
        return None

    def render(self, variables: Mapping[str, str]) -> str:
        """The value with its variable substituted (``variables`` keys in any case)."""
        name = self.variable
        if name is None:
            return self.value
        lowered = {k.lower(): v for k, v in variables.items()}
        return lowered.get(name, self.value)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    policy: str = "None"  # "None" | "Bounded" | "Always"
    retry_number: int = 3
    retry_delay: int = 10


@dataclass(frozen=True, slots=True)
class BatchNotify:
    size: int
    time_window: int = 60


@dataclass(frozen=True, slots=True)
class Webhook:
    target: str
    name: str
    attributes: tuple[Attribute, ...] = ()


# B2C monitors without retryPolicy get the fixed B2C behaviour (reference §1.2): retry every 10 s.
DEFAULT_RETRY = RetryPolicy("Always", 3, 10)


@dataclass(frozen=True, slots=True)
class SubscribeParam:
    refresh_event: int | None = None  # reminder period in seconds; None: no reminders
    retry: RetryPolicy = DEFAULT_RETRY
    batch: BatchNotify | None = None
    webhook: Webhook | None = None
    callback_attributes: tuple[Attribute, ...] = ()  # B2C callbackAttributes


@dataclass(frozen=True, slots=True)
class Monitor:
    id: str
    label: str
    triggers: tuple[Trigger, ...]
    bool_exp: str  # as given, with any missing closing parentheses added
    expression: Expr
    subscribe: SubscribeParam = SubscribeParam()
    extended: tuple[str, ...] = ()  # extendedEventParam
    attributes: tuple[Attribute, ...] = ()  # B2C monitor attributes
    status: str = "Running"

    def trigger(self, name: str) -> Trigger | None:
        for trigger in self.triggers:
            if trigger.name == name:
                return trigger
        return None

    @property
    def paused(self) -> bool:
        return self.status != "Running"


@dataclass(frozen=True, slots=True)
class MonitorParse:
    monitor: Monitor | None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.monitor is not None and not self.problems


def canonical_json(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def monitor_hash(obj: object) -> str:
    """A stable hash of a definition: sha256 of its canonical JSON (sorted keys, no spaces)."""
    # surrogatepass: a rejected definition holding a lone surrogate still gets a hash
    return hashlib.sha256(canonical_json(obj).encode("utf-8", "surrogatepass")).hexdigest()


def parse_monitor(
    obj: object,
    *,
    monitor_id: str | None = None,
    catalog: Catalog | None = None,
    delivery_problems: bool = True,
) -> MonitorParse:
    """Parse and validate one monitor definition; every problem at once.

    ``catalog=None`` checks data names against the Stellantis table (the backend); with a
    catalog, against what this vehicle provides (the agent). ``delivery_problems=False`` (the
    vehicle side) turns problems of ``subscribeParam`` (callback, retry, batch) into warnings:
    the vehicle does not deliver webhooks, the backend judges them. A document past the
    bounds of ``agent.monitors.limits`` is refused with that one problem, before it is read.
    """
    from agent.monitors.definition import build_monitor  # noqa: PLC0415 - it imports this module

    soft = () if delivery_problems else ("$.subscribeParam", "$.monitor.subscribeParam")
    bounds = check_tree(obj)  # size, depth, numbers, Unicode: before anything reads it
    if bounds:
        return MonitorParse(None, bounds)
    report = Report(soft_prefixes=soft)
    monitor = build_monitor(obj, monitor_id, catalog, report)
    if report.problems:
        monitor = None
    return MonitorParse(monitor, report.problems, report.warnings)


def and_of(names: list[str]) -> Expr:
    """The v2 combination: every trigger ANDed."""
    parts: list[Expr] = [Name(n) for n in names]
    return parts[0] if len(parts) == 1 else And(tuple(parts))
