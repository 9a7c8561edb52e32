"""Monitors from the local file and from MQTT, merged, validated and applied without a restart.

Three layers, keyed by monitor id (``parse_monitor`` takes the id from the topic for pushed
monitors, and from the object's ``id``/``monitorId`` or a hash of it for the local file):

1. **vehicle**: ``{prefix}/vehicles/{vin}/monitors/{id}`` (retained, from the backend)
2. **fleet**: ``{prefix}/fleets/{fleetId}/monitors/{id}`` (retained, from the backend)
3. **local**: the ``monitors_file`` of ``agent.toml`` (reloaded on SIGHUP), read and judged by
   ``agent.monitors.loading`` exactly as ``check`` and ``replay`` read it

Merge rule: for each id the highest layer that holds a valid definition runs (vehicle over fleet
over local). A pushed monitor with the id of a local one replaces it while it exists; deleting it
(an empty retained payload) brings the lower layer's definition back. A definition that fails
validation is rejected and reported; it does not replace the layer's previous valid definition,
which keeps running. A ``Paused`` monitor is applied (reported ``applied``) but the engine does not
evaluate it, so it never fires; its fired state is kept for when it runs again.

Deletions while offline: after each (re)connect the broker delivers every retained definition
again; pushed monitors it did not deliver within a settling delay are removed (``reconcile``).

Hostile input (issue 12): a pushed payload passes ``limits.load_monitor_json`` (size, nesting,
numbers, Unicode) before it is parsed, and anything unexpected while reading one definition
is caught here, counted (``internal_errors``) and reported as a rejection: one bad retained
message never stops the main loop, at start-up or later, and the other monitors keep running.

Every decision is reported on ``{prefix}/vehicles/{vin}/monitors/{id}/state`` (retained):
``applied`` with the hash of the definition that runs, or ``rejected`` with every reason. When no
layer holds the id any more, the retained state is cleared (empty payload).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Protocol, TypeVar

from agent.errors import MonitorError, Problem
from agent.monitors.limits import load_monitor_json
from agent.monitors.loading import FileEntry, SeenIds, check_definition
from agent.monitors.model import Catalog, Monitor, monitor_hash, parse_monitor
from agent.wire import Topics, monitor_state_to_json, valid_topic_level

log = logging.getLogger(__name__)

T = TypeVar("T")
LAYERS = ("vehicle", "fleet", "local")
MAX_REASONS = 20  # reasons published on a state topic, at most
MAX_REASON_CHARS = 300  # characters of one reason's message


class MonitorTarget(Protocol):
    """The part of the engine that monitor sync drives."""

    def set_monitor(self, monitor: Monitor) -> None: ...

    def remove_monitor(self, monitor_id: str, *, forget: bool = True) -> None: ...


@dataclass(frozen=True, slots=True)
class Candidate:
    """A valid definition one layer holds for an id."""

    monitor: Monitor
    hash: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The last decision about one id, as reported on its state topic."""

    applied: bool
    hash: str
    reasons: tuple[Problem, ...] = ()


class MonitorSync:
    """Main-loop side; ``publish(topic, payload)`` sends a retained QoS 1 message (or gives up)."""

    def __init__(
        self,
        vin: str,
        fleet_id: str | None,
        topics: Topics,
        *,
        catalog: Catalog,
        engine: MonitorTarget,
        publish: Callable[[str, bytes], object],
        clock: Callable[[], float],
        cost: Callable[[Monitor], float | None] | None = None,
    ) -> None:
        self.vin = vin
        self._cost = cost  # a running monitor's OBD-II requests per minute, in its state
        self.fleet_id = fleet_id
        self.topics = topics
        self.catalog = catalog
        self.engine = engine
        self._publish = publish
        self._clock = clock
        self._layers: dict[str, dict[str, Candidate]] = {name: {} for name in LAYERS}
        self._running: dict[str, Candidate] = {}  # what the engine has (or has paused)
        self._verdicts: dict[str, Verdict] = {}
        self.counters: dict[str, int] = {"applied": 0, "rejected": 0, "removed": 0}
        self.counters |= {"skipped_foreign_topic": 0, "skipped_unchanged": 0}
        self.counters["removed_not_retained"] = 0
        self.counters |= {"rejected_input": 0, "internal_errors": 0}
        self._seen: set[tuple[str, str]] | None = None  # pushed ids delivered since connecting

    def subscriptions(self) -> tuple[str, ...]:
        subs = [self.topics.vehicle_monitors(self.vin)]
        if self.fleet_id:
            subs.append(self.topics.fleet_monitors(self.fleet_id))
        return tuple(subs)

    def applied(self) -> list[str]:
        """Ids of the monitors that run (paused ones included)."""
        return sorted(self._running)

    def verdict(self, monitor_id: str) -> Verdict | None:
        return self._verdicts.get(monitor_id)

    # -- inputs ----------------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> bool:
        """A pushed definition (or deletion); True when the set of running monitors changed."""
        located = self._locate(topic)
        if located is None:
            self.counters["skipped_foreign_topic"] += 1
            return False
        layer, monitor_id = located
        if self._seen is not None:
            self._seen.add((layer, monitor_id))
        if not payload:
            return self._remove(layer, monitor_id)
        try:
            obj = load_monitor_json(payload)
        except MonitorError as exc:
            self.counters["rejected_input"] += 1
            self._reject(monitor_id, "", list(exc.problems))
            return False
        return self._guarded(monitor_id, partial(self._offer, layer, monitor_id, obj), False)

    def load_local(self, entries: Sequence[FileEntry]) -> bool:
        """Replace the local layer (start-up and SIGHUP) with the entries of the monitors file;
        True when the running set changed. Each entry is judged by ``check_definition``, the
        judge of ``check`` and ``replay``."""
        offered: dict[str, Candidate] = {}
        seen = SeenIds()
        for index, entry in enumerate(entries):
            monitor_id = _local_id(entry.obj, index)
            read = partial(self._read_local, monitor_id, entry, seen)
            found = self._guarded(monitor_id, read, None)
            if found is not None:
                offered[found.monitor.id] = found
        gone = set(self._layers["local"]) - set(offered)
        self._layers["local"] = offered
        changed = False
        for monitor_id in sorted(gone | set(offered)):
            changed |= self._settle(monitor_id)
        return changed

    def _read_local(self, monitor_id: str, entry: FileEntry, seen: SeenIds) -> Candidate | None:
        parsed = check_definition(entry, self.catalog, seen).parse
        if parsed.monitor is None:
            self._reject(monitor_id, monitor_hash(entry.obj), parsed.problems)
            return None
        for warning in parsed.warnings:
            log.warning("monitor %s: %s", monitor_id, warning)
        return Candidate(parsed.monitor, monitor_hash(entry.obj))

    def _guarded(self, monitor_id: str, read: Callable[[], T], failed: T) -> T:
        """``read()``, or ``failed`` when it raised: a bug met by hostile input is counted,
        logged with its traceback, and reported as a rejection instead of stopping the agent."""
        try:
            return read()
        except Exception as exc:  # the guard of every definition from outside
            self.counters["internal_errors"] += 1
            log.exception("monitor %s: unexpected error while reading it", monitor_id)
            reason = Problem("$", f"could not be read ({type(exc).__name__})")
            self._reject(monitor_id, "", [reason])
            return failed

    def on_connected(self) -> None:
        """Publish every verdict again (retained states may be gone after a broker restart), and
        start noting which pushed monitors the broker delivers again (see ``reconcile``)."""
        self._seen = set()
        for monitor_id, verdict in self._verdicts.items():
            self._send(monitor_id, verdict)

    def reconcile(self) -> bool:
        """Drop pushed monitors the broker did not deliver again since ``on_connected``.

        A monitor deleted while the agent was offline leaves no empty retained message behind,
        only the absence of its retained definition: the retained messages are the desired state.
        Called by the main loop a while after each connection. The fired state is kept, so a
        definition that only arrived late is not fired twice. True when the running set changed.
        """
        if self._seen is None:
            return False
        changed = False
        for layer in ("vehicle", "fleet"):
            for monitor_id in sorted(set(self._layers[layer])):
                if (layer, monitor_id) not in self._seen:
                    log.info(
                        "monitor %s no longer retained for this %s: removed", monitor_id, layer
                    )
                    self.counters["removed_not_retained"] += 1
                    del self._layers[layer][monitor_id]
                    changed |= self._settle(monitor_id, forget=False)
        self._seen = None
        return changed

    # -- merging ---------------------------------------------------------------------------------

    def _locate(self, topic: str) -> tuple[str, str] | None:
        vehicle = self.topics.vehicle_monitor(self.vin, "")
        fleet = self.topics.fleet_monitor(self.fleet_id, "") if self.fleet_id else None
        if topic.startswith(vehicle):
            layer, monitor_id = "vehicle", topic[len(vehicle) :]
        elif fleet is not None and topic.startswith(fleet):
            layer, monitor_id = "fleet", topic[len(fleet) :]
        else:
            return None
        return (layer, monitor_id) if valid_topic_level(monitor_id) else None

    def _offer(self, layer: str, monitor_id: str, obj: object) -> bool:
        digest = monitor_hash(obj)
        current = self._layers[layer].get(monitor_id)
        if current is not None and current.hash == digest:
            self.counters["skipped_unchanged"] += 1
            running = self._running.get(monitor_id)
            self._verdicts[monitor_id] = Verdict(True, running.hash if running else digest)
            self._send(monitor_id, self._verdicts[monitor_id])
            return False
        # The backend pushes only what the vehicle evaluates (no callback, no retry policy): the
        # delivery part is the backend's to judge, so its problems are warnings here.
        parsed = parse_monitor(
            obj, monitor_id=monitor_id, catalog=self.catalog, delivery_problems=False
        )
        if parsed.monitor is None:
            self._reject(monitor_id, digest, parsed.problems)
            return False
        for warning in parsed.warnings:
            log.warning("monitor %s: %s", monitor_id, warning)
        self._layers[layer][monitor_id] = Candidate(parsed.monitor, digest)
        return self._settle(monitor_id)

    def _remove(self, layer: str, monitor_id: str) -> bool:
        if self._layers[layer].pop(monitor_id, None) is None:
            if monitor_id not in self._running and monitor_id in self._verdicts:
                del self._verdicts[monitor_id]
                self._clear_state(monitor_id)  # a rejected one, never applied
            return False
        return self._settle(monitor_id)

    def _settle(self, monitor_id: str, *, forget: bool = True) -> bool:
        """Make the engine run the highest valid layer's definition of ``monitor_id``."""
        wanted = next(
            (self._layers[n][monitor_id] for n in LAYERS if monitor_id in self._layers[n]), None
        )
        running = self._running.get(monitor_id)
        if wanted is None:
            if running is None:
                return False
            self._running.pop(monitor_id)
            self.engine.remove_monitor(monitor_id, forget=forget)
            self._verdicts.pop(monitor_id, None)
            self.counters["removed"] += 1
            log.info("monitor %s removed", monitor_id)
            self._clear_state(monitor_id)
            return True
        if running is not None and running.hash == wanted.hash:
            return False
        self._running[monitor_id] = wanted
        self.engine.set_monitor(wanted.monitor)  # the engine does not evaluate a paused one
        self.counters["applied"] += 1
        log.info("monitor %s applied (%s, %s)", monitor_id, wanted.monitor.status, wanted.hash[:12])
        self._verdicts[monitor_id] = Verdict(True, wanted.hash)
        self._send(monitor_id, self._verdicts[monitor_id])
        return True

    def _reject(self, monitor_id: str, digest: str, problems: list[Problem]) -> None:
        self.counters["rejected"] += 1
        reasons = tuple(_short(p) for p in problems[:MAX_REASONS])
        log.warning("monitor %s rejected: %s", monitor_id, "; ".join(str(p) for p in reasons))
        self._verdicts[monitor_id] = Verdict(False, digest, reasons)
        self._send(monitor_id, self._verdicts[monitor_id])

    # -- reporting -------------------------------------------------------------------------------

    def _send(self, monitor_id: str, verdict: Verdict) -> None:
        running = self._running.get(monitor_id)
        cost = None
        if verdict.applied and running is not None and self._cost is not None:
            cost = self._cost(running.monitor)
        payload = monitor_state_to_json(
            monitor_id=monitor_id,
            applied=verdict.applied,
            at=datetime.fromtimestamp(self._clock(), UTC),
            definition_hash=verdict.hash,
            reasons=[{"path": p.path, "message": p.message} for p in verdict.reasons],
            obd_requests_per_minute=cost,
        )
        self._publish(self.topics.monitor_state(self.vin, monitor_id), payload)

    def _clear_state(self, monitor_id: str) -> None:
        self._publish(self.topics.monitor_state(self.vin, monitor_id), b"")


def _short(problem: Problem) -> Problem:
    """The problem with its path and message cut to a readable length (they quote the input)."""
    path = problem.path if len(problem.path) <= 200 else f"{problem.path[:200]}..."
    message = problem.message
    if len(message) > MAX_REASON_CHARS:
        message = f"{message[:MAX_REASON_CHARS]}..."
    return Problem(path, message)


def _local_id(obj: object, index: int) -> str:
    if isinstance(obj, dict):
        for key in ("id", "monitorId"):
            value = obj.get(key)
            if isinstance(value, str) and valid_topic_level(value):
                return value
    return f"local-{index}"
