"""The composition root of ``edgemon-agent run``: the only module that knows every stage.

    CAN reader threads ─┐
    GPS reader thread ──┼─> inbox (one queue) ─> main loop: pipeline step -> outbox
    MQTT link threads ──┘                                   outbox -> pump -> MQTT (QoS 1)

Every thread only puts values on ``inbox``; the main loop alone touches the decoder, the vehicle
state, the engine, the outbox and monitor sync, so none of them needs a lock. A batch of inbox
items is one outbox transaction (bursts are committed in groups), committed before the pump
publishes any of it.

Time. The engine runs on the trusted clock (``agent.gps.clock``): system time once synchronised,
GPS time before. Frame and fix timestamps (system clock) are shifted by the same offset, so
staleness and event dates stay on one time line.

Signals. SIGTERM/SIGINT (``request_stop``): readers stop, what is queued is processed and
committed, the pump gets a few seconds to flush, the retained status goes offline, exit 0.
SIGHUP (``request_reload``): the local monitors file is read again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from agent import __version__
from agent.can.dbc import load_vehicle
from agent.can.decode import Decoder
from agent.can.source import CanSource, read_log
from agent.config import AgentConfig, CanReplay
from agent.errors import MonitorError, OutboxError, SourceError
from agent.gps.clock import TrustedClock, system_clock_synced
from agent.gps.source import FixSource, make_fix_source
from agent.live import LIVE_PERIOD, live_path, snapshot, write_snapshot
from agent.model import Event, Fix, Frame, Sample
from agent.monitors.engine import Engine, FiredState
from agent.monitors.loading import read_monitors_file
from agent.monitors.model import Catalog, Monitor
from agent.monitors.signals import GPS_SPEED
from agent.obd.cost import monitor_names, obd_cost
from agent.obd.names import ObdCatalog
from agent.obd.service import Capabilities, ObdService
from agent.pipeline import Pipeline
from agent.sdnotify import Notifier
from agent.source_settings import BusConfig
from agent.story import committed_line, startup_lines
from agent.uplink.monitor_sync import MonitorSync
from agent.uplink.mqtt import (
    Acked,
    Connected,
    Disconnected,
    LinkEvent,
    MqttLink,
    Received,
    Will,
)
from agent.uplink.outbox import Outbox
from agent.uplink.pump import EventPump
from agent.wire import Topics, capabilities_to_json, status_to_json

log = logging.getLogger(__name__)

BATCH = 512  # inbox items handled per outbox transaction, at most
STATUS_PERIOD = 60.0
# A bus without a frame for this long is reported quiet (car asleep, bus down, wrong bitrate).
QUIET_AFTER = 10.0
HOUSEKEEPING_PERIOD = 30.0
FLUSH_SECONDS = 3.0
HELD_MAX = 10_000  # events kept in memory while the outbox cannot be written
RECONCILE_DELAY = 10.0  # after a connect, retained monitors not re-delivered by then are gone


@dataclass(frozen=True, slots=True)
class Control:
    action: str  # "stop" | "reload"


Item = Frame | Fix | Sample | LinkEvent | Control


class CanReader:
    """One thread per bus: a live python-can bus, or a recorded log replayed as if live."""

    def __init__(
        self, bus: BusConfig, replay: CanReplay | None, put: Callable[[Item], None]
    ) -> None:
        self.bus = bus
        self.replay = replay
        self._put = put
        self._stop = threading.Event()
        self.source = CanSource(bus) if replay is None else None
        self.last_frame_at: float | None = None  # time.monotonic() of the last frame received
        self._thread = threading.Thread(target=self._run, name=f"can-{bus.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(3.0)
        if self.source is not None:
            self.source.close()

    def set_filters(self, filters: list[dict[str, int | bool]]) -> None:
        if self.source is not None:
            self.source.set_filters(filters)

    def _run(self) -> None:
        try:
            if self.replay is not None:
                self._replay(self.replay)
            else:
                self._live()
        except SourceError as exc:
            log.error("CAN bus %s: %s", self.bus.name, exc)

    def _live(self) -> None:
        """Frames until stopped; ``CanSource.recv`` opens the bus, and reopens it with its
        backoff while it cannot (an interface not up yet at boot, a USB adapter unplugged)."""
        assert self.source is not None
        announced = False
        while not self._stop.is_set():
            frame = self.source.recv(0.25)
            if not announced and self.source.is_open:
                announced = True
                log.info(
                    "CAN bus %s: %s %s open", self.bus.name, self.bus.interface, self.bus.channel
                )
            if frame is not None:
                self.last_frame_at = time.monotonic()
                self._put(frame)

    def activity(self, now: float) -> dict[str, bool | float | None]:
        """The bus as the status reports it: quiet or not, seconds since its last frame."""
        if self.last_frame_at is None:
            return {"quiet": True, "lastFrameAgeS": None}
        age = max(0.0, now - self.last_frame_at)
        return {"quiet": age > QUIET_AFTER, "lastFrameAgeS": round(age, 1)}

    def _replay(self, replay: CanReplay) -> None:
        """Recorded frames, re-stamped to the time they are replayed (their gaps kept)."""
        first: float | None = None
        start = time.time()
        for frame in read_log(replay.path, bus=self.bus.name):
            if self._stop.is_set():
                return
            first = frame.timestamp if first is None else first
            due = start + (frame.timestamp - first) / replay.speed if replay.speed else time.time()
            if due > time.time():
                self._stop.wait(due - time.time())
            self.last_frame_at = time.monotonic()
            self._put(replace(frame, timestamp=max(due, time.time())))
        log.info("CAN bus %s: replay of %s finished", self.bus.name, replay.path)


class Agent:
    """Builds every stage from the configuration; ``run()`` is the main loop."""

    def __init__(self, config: AgentConfig, *, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self.topics = Topics(config.topic_prefix)
        self.vehicle = load_vehicle(config.bus_specs())
        self.decoder = Decoder(self.vehicle)
        self.clock = TrustedClock(config.clock)
        self.outbox = self._open_outbox()
        # with [[obd]], the OBD-II names join the CAN catalog (the CAN bus wins on a shared name)
        catalog: Catalog = ObdCatalog(self.vehicle.catalog) if config.obd else self.vehicle.catalog
        self.catalog = catalog
        self.engine = Engine(config.vin, config.fleet_id, catalog, self.outbox, self.outbox)
        self.pipeline = Pipeline(self.decoder, self.engine)
        self.state = self.pipeline.state
        self.sync = MonitorSync(
            config.vin,
            config.fleet_id,
            self.topics,
            catalog=catalog,
            engine=self.engine,
            publish=self._publish_retained,
            clock=self.now,
            cost=self._monitor_cost if config.obd else None,
        )
        self.link = MqttLink(
            config.mqtt,
            config.mqtt.client_id or f"edgemon-{config.vin}",
            self.inbox.put,
            subscriptions=self.sync.subscriptions(),
            will=self._will,
        )
        self.pump = EventPump(
            self.outbox,
            self.link,
            self.topics,
            config.mqtt.max_inflight,
            max_rate=config.mqtt.max_publish_rate,
            burst=config.mqtt.publish_burst,
        )
        replays = {r.bus: r for r in config.can_replay}
        self.readers = [CanReader(b, replays.get(b.name), self.inbox.put) for b in config.buses]
        self._quiet: dict[str, bool] = {}  # per bus, as last logged
        self.obd = [ObdService(c, self.inbox.put, cache_dir=config.state_dir) for c in config.obd]
        self._manifest: tuple[Capabilities | None, ...] | None = None  # as last published
        self.live_path = live_path(config.state_dir)  # for `edgemon-agent status`
        self.live_errors = 0
        self.gps = make_fix_source(config.gps, self._on_fix) if config.gps else None
        self._stopping = False
        self._reconcile_at = 0.0
        self.events_committed = 0
        self.local_file_errors = 0
        self.commit_failures = 0
        self.held_dropped = 0
        self._held: list[Event] = []

    def _open_outbox(self) -> Outbox:
        settings = self.config.outbox
        return Outbox(
            settings.path,
            max_events=settings.max_events,
            max_bytes=settings.max_bytes,
            max_age=settings.max_age,
            synchronous=settings.synchronous,
            fired_type=FiredState,
            clock=self.now,
        )

    # -- called from other threads / signal handlers ---------------------------------------------

    def request_stop(self) -> None:
        self.inbox.put(Control("stop"))

    def request_reload(self) -> None:
        self.inbox.put(Control("reload"))

    def _on_fix(self, fix: Fix) -> None:
        self.inbox.put(fix)

    # -- time ------------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now(time.time())

    def _offset(self) -> float:
        system = time.time()
        return self.clock.now(system) - system

    # -- lifecycle -------------------------------------------------------------------------------

    def run(self) -> int:
        """The main loop, until ``request_stop``; always stops what it started."""
        try:
            self._start()
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _loop(self) -> None:
        next_status = next_housekeeping = next_watchdog = next_live = 0.0
        while not self._stopping:
            wait = self._wait_time(next_status, next_housekeeping, next_watchdog, next_live)
            self._step(wait)
            mono = time.monotonic()
            if mono >= next_live:
                self._write_live()
                next_live = mono + LIVE_PERIOD
            if mono >= next_watchdog and self.notifier.watchdog_interval:
                self.notifier.watchdog()
                next_watchdog = mono + self.notifier.watchdog_interval
            if mono >= next_status:
                self._publish_status()
                next_status = mono + STATUS_PERIOD
            if self._reconcile_at and mono >= self._reconcile_at:
                self._reconcile_at = 0.0
                if self.sync.reconcile():
                    self._apply_wanted_names()
            if self.obd and self.link.connected:
                self._publish_capabilities()
            if mono >= next_housekeeping:
                self._housekeeping()
                next_housekeeping = mono + HOUSEKEEPING_PERIOD

    def _start(self) -> None:
        self.clock.set_system_synced(system_clock_synced())
        self._load_local_monitors()
        self._apply_wanted_names()
        for reader in self.readers:
            reader.start()
        for service in self.obd:
            service.start()
        if self.gps is not None:
            self.gps.start()
        self.link.start()
        applied = len(self.sync.applied())
        signals = self.engine.wanted_names()
        monitors = self.engine.monitors()
        for line in startup_lines(self.config, signals, monitors, self.clock, self.outbox.depth()):
            log.info("%s", line)
        self.notifier.ready(f"running; {applied} monitor(s); outbox {self.outbox.depth()}")

    def _wait_time(self, *deadlines: float) -> float:
        mono = time.monotonic()
        wait = min([0.5, *(d - mono for d in deadlines if d)])
        engine_deadline = self.engine.next_deadline()
        if engine_deadline is not None:
            wait = min(wait, engine_deadline - self.now())
        paced = self.pump.next_send_in()
        if paced is not None:
            wait = min(wait, paced)
        return max(0.0, wait)

    def _shutdown(self) -> None:
        self.notifier.stopping("flushing the outbox")
        for reader in self.readers:
            reader.stop()
        for service in self.obd:
            service.stop()
        if self.gps is not None:
            self.gps.stop(2.0)
        for _ in range(1000):  # what the readers queued before they stopped, in batches
            if self.inbox.empty():
                break
            self._step(0.0)
        deadline = time.monotonic() + FLUSH_SECONDS
        while self.outbox.depth() and self.link.connected and time.monotonic() < deadline:
            self._step(0.05)
        self.link.stop((self.topics.status(self.config.vin), self._status(online=False)))
        if self._held:
            log.error("%d event(s) could not be committed and are lost", len(self._held))
        log.info("agent stopped; %d event(s) left in the outbox", self.outbox.depth())
        self.outbox.close()

    # -- the main loop's step --------------------------------------------------------------------

    def _step(self, wait: float) -> None:
        """Take a batch from the inbox, commit what it produced, then publish."""
        events: list[Event] = []
        acks: list[Acked] = []
        item = self._next_item(wait)
        handled = 0
        offset = self._offset()
        while item is not None:
            handled += 1
            if isinstance(item, Acked):
                acks.append(item)
            else:
                if isinstance(item, Connected | Disconnected):
                    self.pump.handle_acks(acks)  # acks of the old connection first
                    acks = []
                events += self._handle(item, offset)
            if handled >= BATCH:
                break  # the rest waits for the next step, in order
            item = self._next_item(0.0)
        events += self.pipeline.due(self.now())
        self._commit(events)
        self.pump.handle_acks(acks)
        self.pump.fill()

    def _next_item(self, wait: float) -> Item | None:
        try:
            return self.inbox.get(timeout=wait) if wait > 0 else self.inbox.get_nowait()
        except queue.Empty:
            return None

    def _handle(self, item: Item, offset: float) -> list[Event]:
        if isinstance(item, Frame):
            frame = replace(item, timestamp=item.timestamp + offset) if offset else item
            return self.pipeline.step(frame, frame.timestamp)
        if isinstance(item, Sample):
            sample = replace(item, timestamp=item.timestamp + offset) if offset else item
            return self.pipeline.step(sample, sample.timestamp)
        if isinstance(item, Fix):
            self.clock.observe_fix(item, item.timestamp)  # receive time on the system clock
            fix = replace(item, timestamp=item.timestamp + offset) if offset else item
            return self.pipeline.step(fix, self.now())
        if isinstance(item, Control):
            self._control(item)
        elif isinstance(item, Received):
            if self.sync.on_message(item.topic, item.payload):
                self._apply_wanted_names()
        else:
            self.pump.handle(item)
            if isinstance(item, Connected):
                self._publish_status()
                if self.obd:  # published again on each connection (cheap, retained)
                    self._manifest = None
                    self._publish_capabilities()
                self.sync.on_connected()
                self._reconcile_at = time.monotonic() + RECONCILE_DELAY
        return []

    def _control(self, item: Control) -> None:
        if item.action == "stop":
            log.info("stop requested")
            self._stopping = True
        elif item.action == "reload":
            log.info("reloading the local monitors file")
            self._load_local_monitors()
            self._apply_wanted_names()

    def _commit(self, events: list[Event]) -> None:
        """Commit this step's events (and any a failed commit left behind), oldest first.

        When the disk refuses (full, I/O error) the events wait in memory, bounded by
        HELD_MAX (oldest dropped, counted), and the next step tries again: nothing is published
        before it is committed, and the process keeps running.
        """
        batch = self._held + events if self._held else events
        if not batch:
            self.outbox.append((), self.now())  # buffered fired state, if any
            return
        try:
            self.outbox.append(batch, self.now())
        except OutboxError as exc:
            self.commit_failures += 1
            if self.commit_failures & (self.commit_failures - 1) == 0:  # 1, 2, 4, 8...
                log.error("%s; %d event(s) held in memory, retrying", exc, len(batch))
            self.held_dropped += max(0, len(batch) - HELD_MAX)
            self._held = batch[-HELD_MAX:]
            return
        self._held = []
        self.events_committed += len(batch)
        if log.isEnabledFor(logging.INFO):
            labels = {m.id: m.label for m in self.engine.monitors()}
            for event in batch:
                log.info("%s", committed_line(event, labels.get(event.monitor_id)))

    # -- monitors --------------------------------------------------------------------------------

    def _load_local_monitors(self) -> None:
        path: Path | None = self.config.monitors_file
        if path is None:
            return
        try:
            entries = read_monitors_file(path)
        except OSError as exc:
            self._local_file_error(f"cannot read {path}: {exc.strerror or exc}")
            return
        except MonitorError as exc:
            self._local_file_error(str(exc))
            return
        self.sync.load_local(entries)

    def _local_file_error(self, reason: str) -> None:
        self.local_file_errors += 1
        log.error("local monitors not (re)loaded, the previous ones keep running: %s", reason)

    def _apply_wanted_names(self) -> None:
        """CAN first: OBD-II is asked only for the names no CAN bus decodes."""
        self.decoder.use(self.engine.wanted_names())
        for reader in self.readers:
            reader.set_filters(self.decoder.can_filters(reader.bus.name))
        for service in self.obd:
            service.want(self.decoder.unresolved)

    # -- status ----------------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Every stage's counters, prefixed (``can.``, ``gps.``, ``outbox.``, ``mqtt.``...)."""
        merged = {
            "events_committed": self.events_committed,
            "monitors.local_file_errors": self.local_file_errors,
            "live.write_errors": self.live_errors,
            "outbox.commit_failures": self.commit_failures,
            "outbox.held": len(self._held),
            "outbox.held_dropped": self.held_dropped,
        }
        parts: list[tuple[str, dict[str, int]]] = [
            ("can", self.decoder.counters),
            ("outbox", self.outbox.counters),
            ("mqtt", {**self.link.counters, **self.pump.counters}),
            ("monitors", self.sync.counters),
        ]
        if self.gps is not None:
            parts.append(("gps", _snapshot(self.gps)))
        for reader in self.readers:
            if reader.source is not None:
                parts.append((f"bus.{reader.bus.name}", _snapshot(reader.source)))
        for service in self.obd:
            parts.append((f"obd.{service.config.name}", service.snapshot()))
            parts.append((f"obd.{service.config.name}.monitor", self._obd_costs(service)))
        for prefix, counters in parts:
            merged.update({f"{prefix}.{k}": int(v) for k, v in counters.items()})
        merged["outbox.dropped_total"] = self.outbox.dropped
        return merged

    def _monitor_cost(self, monitor: Monitor) -> float:
        """What ``monitor`` costs on every [[obd]] bus, requests per minute (its state says)."""
        names = monitor_names(monitor)
        return sum(
            obd_cost(names, self.vehicle.catalog, s.config, max(1, len(s.plan.ecus))).per_minute
            for s in self.obd
        )

    def _obd_costs(self, service: ObdService) -> dict[str, int]:
        """What each monitor costs on this bus now, in requests per minute (``check`` says the
        same before the monitors are sent)."""
        ecus = max(1, len(service.plan.ecus))
        found = {}
        for monitor in self.engine.monitors():
            cost = obd_cost(monitor_names(monitor), self.vehicle.catalog, service.config, ecus)
            if cost.per_minute:
                found[f"{monitor.id}.requests_per_minute"] = round(cost.per_minute)
        return found

    def _status(self, *, online: bool) -> bytes:
        """The status message; offline (the stop message) without counters."""
        return status_to_json(
            vin=self.config.vin,
            online=online,
            at=datetime.fromtimestamp(self.now(), UTC),
            version=__version__,
            outbox_depth=self.outbox.depth(),
            monitors=self.sync.applied(),
            counters=self.counters() if online else {},
            clock=self.clock.source,
            buses=self.bus_activity(),
        )

    def bus_activity(self) -> dict[str, dict[str, bool | float | None]]:
        """Each bus: quiet (no frame for ``QUIET_AFTER`` s) and the age of its last frame."""
        mono = time.monotonic()
        return {reader.bus.name: reader.activity(mono) for reader in self.readers}

    def _log_quiet_changes(self, activity: dict[str, dict[str, bool | float | None]]) -> None:
        for name, now in activity.items():
            if self._quiet.get(name) == now["quiet"]:
                continue
            if now["quiet"]:
                log.info("CAN bus %s quiet (no frame for %.0f s): car asleep or bus down; "
                         "nothing is sent on it", name, QUIET_AFTER)  # fmt: skip
            elif name in self._quiet:
                log.info("CAN bus %s active again", name)
            self._quiet[name] = bool(now["quiet"])

    def _will(self) -> Will:
        """The last will, built in the MQTT thread at each connect: plain values only (no
        structure the main loop may be changing)."""
        payload = status_to_json(
            vin=self.config.vin,
            online=False,
            at=datetime.fromtimestamp(self.now(), UTC),
            version=__version__,
            outbox_depth=self.outbox.depth(),
        )
        return Will(self.topics.status(self.config.vin), payload)

    def _publish_status(self) -> None:
        self._log_quiet_changes(self.bus_activity())
        self._publish_retained(self.topics.status(self.config.vin), self._status(online=True))
        self.notifier.status(
            f"{'connected' if self.link.connected else 'offline'}; "
            f"{len(self.sync.applied())} monitor(s); outbox {self.outbox.depth()}"
        )

    def _write_live(self) -> None:
        """The live view for ``edgemon-agent status`` (``agent.live``); a failure is logged
        once and counted, never fatal."""
        mqtt = self.config.mqtt
        body = snapshot(
            vin=self.config.vin,
            engine=self.engine,
            state=self.state,
            now=self.now(),
            outbox_depth=self.outbox.depth(),
            broker=f"{mqtt.host}:{mqtt.port}",
            connected=self.link.connected,
            extra={"clock": self.clock.source, "buses": self.bus_activity()},
        )
        try:
            write_snapshot(self.live_path, body)
        except OSError as exc:
            if not self.live_errors:
                log.warning("live view %s not written: %s", self.live_path, exc)
            self.live_errors += 1

    def _publish_capabilities(self) -> None:
        """The retained manifest of the data names this car can serve: its CAN catalog, GPS
        speed, and what each OBD-II scan found; again whenever a scan changes it."""
        scans = tuple(service.capabilities for service in self.obd)
        if self._manifest is not None and all(
            a is b for a, b in zip(scans, self._manifest, strict=True)
        ):
            return
        self._manifest = scans
        names = [*self.vehicle.catalog.names(), GPS_SPEED]
        obd: dict[str, dict[str, object]] = {}
        for service, found in zip(self.obd, scans, strict=True):
            if found is None:
                continue
            names += found.data_names
            obd[service.config.name] = {
                "vin": found.vin,
                "ecus": list(found.ecus),
                "pids": [f"{p:02X}" for p in found.pids],
            }
        payload = capabilities_to_json(
            vin=self.config.vin, at=datetime.fromtimestamp(self.now(), UTC), data_names=names,
            obd=obd,
        )  # fmt: skip
        self._publish_retained(self.topics.capabilities(self.config.vin), payload)

    def _publish_retained(self, topic: str, payload: bytes) -> None:
        self.link.publish(topic, payload, qos=1, retain=True)

    def _housekeeping(self) -> None:
        self.clock.set_system_synced(system_clock_synced())
        self.outbox.prune(self.now())


def _snapshot(source: CanSource | FixSource) -> dict[str, int]:
    """A copy of counters a reader thread updates (a key added meanwhile: read again)."""
    for _ in range(3):
        try:
            return dict(source.counters)
        except RuntimeError:  # dictionary changed size during iteration
            continue
    return {}
