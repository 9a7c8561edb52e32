"""The composition root: builds the stores, ingest, dispatcher and API of one process.

``roles`` picks what this process runs (``ingest``, ``dispatcher``, ``api``); several processes
can share one store file and one broker (the shared subscription spreads events; the dispatcher
leases deliveries, so two dispatchers never send the same attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import uvicorn

from agent.sdnotify import Notifier
from agent.wire import Topics
from backend.api.routes import ApiContext, Part, build_api
from backend.config import BackendConfig
from backend.delivery.dispatcher import Dispatcher
from backend.delivery.retention import purge_loop
from backend.delivery.signing import secret_key
from backend.delivery.webhooks import AiohttpSender, WebhookSender, tls_context
from backend.ingest.intake import EventIntake, MqttIngest
from backend.metrics import Metrics
from backend.monitor_channel import MqttMonitorChannel
from backend.store.records import VehicleMonitorState
from backend.store.sqlite import SqliteStore

log = logging.getLogger(__name__)
ROLES = ("ingest", "dispatcher", "api")


async def status_sync(channel: MqttMonitorChannel, stop: asyncio.Event, every: float = 5.0) -> None:
    """Push status changes made outside the API (a dispatcher marking a monitor Failed after
    410 Gone) to the retained monitor topics, so the agents stop firing it."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if not channel.connected.is_set():
            continue  # the reconnection republishes everything
        for record in channel.store.live_monitors():
            if channel.published.get(record.monitor_id) != record.status:
                log.info("monitor %s is now %s", record.monitor_id, record.status)
                await asyncio.to_thread(channel.publish, record)


async def watchdog(
    failing: Callable[[], list[str]],
    stop: asyncio.Event,
    notifier: Notifier | None = None,
    note: Callable[[], str] = lambda: "running",
) -> None:
    """systemd (``Type=notify``, ``WatchdogSec=``): READY once, then WATCHDOG=1 at half the
    interval while every part works; a dead worker stops the pings and systemd restarts us.
    Outside systemd the notifier is a no-op and this returns at once."""
    notifier = notifier or Notifier()
    notifier.ready("running")
    interval = notifier.watchdog_interval
    if interval is None:
        return
    said = "running"
    while not stop.is_set():
        failing_now = failing()
        if failing_now:
            notifier.status("failing: " + ", ".join(failing_now))
        else:
            notifier.watchdog()
            if (line := note()) != said:  # a broker outage: said once, and its end
                notifier.status(line)
                said = line
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


@dataclass
class Backend:
    config: BackendConfig
    roles: frozenset[str] = frozenset(ROLES)
    clock: Callable[[], float] = time.time
    sender: WebhookSender | None = None
    metrics: Metrics = field(default_factory=Metrics)
    dispatcher: Dispatcher | None = None
    ingest: MqttIngest | None = None
    server: uvicorn.Server | None = None
    status_sync_interval: float = 5.0
    before_commit: Callable[[int], None] | None = None  # ingest's hook (MqttIngest)
    channel: MqttMonitorChannel | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    dispatcher_tasks: list[asyncio.Task[None]] = field(default_factory=list)  # loop, purge

    def failing(self) -> list[str]:
        """The workers of this process that have died; empty when all is well. systemd's
        watchdog stops on these (a restart brings a worker back; it cannot bring a broker back,
        so a broker outage fails ``/healthz`` and shows in the unit's status line only)."""
        failing = []
        if self.ingest is not None and not self.ingest.alive():
            failing.append("ingest worker")
        if self.channel is not None and not self.channel.alive():
            failing.append("monitor channel")
        if any(task.done() for task in self.tasks):  # they only end when asked to stop
            failing.append("background task")
        return failing

    def parts(self) -> dict[str, Part]:
        """Each part this process runs, working or not, for ``/healthz`` (the store's part is
        added by the API, which asks the store itself)."""
        parts: dict[str, Part] = {}
        links = [x.link for x in (self.ingest, self.channel) if x is not None]
        if links:
            parts["broker"] = Part(
                all(link.ok() for link in links), "; ".join(link.describe() for link in links)
            )
        if self.ingest is not None:
            alive = self.ingest.alive()
            parts["ingest"] = Part(alive, "commit worker running" if alive else "worker died")
        if self.dispatcher_tasks:
            alive = not any(t.done() for t in self.dispatcher_tasks)
            parts["dispatcher"] = Part(alive, "running" if alive else "its loop or purge stopped")
        if self.channel is not None:
            dead = [t for t in self.tasks if t.done() and t not in self.dispatcher_tasks]
            alive = self.channel.alive() and not dead
            parts["api"] = Part(alive, "running" if alive else "monitor channel or sync stopped")
        return parts

    def _status_line(self) -> str:
        links = [x.link for x in (self.ingest, self.channel) if x is not None]
        away = [link.name for link in links if not link.ok()]
        return "running; no broker for " + ", ".join(away) if away else "running"

    def _secret_for(self, fleet_id: str) -> bytes:
        return secret_key(self.config.webhooks.secret_for(fleet_id))

    def _build_dispatcher(self) -> Dispatcher:
        hooks = self.config.webhooks
        sender = self.sender or AiohttpSender(
            verify=tls_context(hooks.ca_bundle),
            connect_timeout=hooks.connect_timeout,
            timeout=hooks.timeout,
            allow_insecure_http=hooks.allow_insecure_http,
            policy=hooks.policy,
            max_answer_bytes=hooks.max_answer_bytes,
        )
        d = self.config.dispatcher
        return Dispatcher(
            SqliteStore(self.config.store_path),
            sender,
            self._secret_for,
            per_endpoint=hooks.per_endpoint_concurrency,
            claim_batch=d.claim_batch,
            lease=d.lease,
            poll_interval=d.poll_interval,
            max_age=d.max_age,
            none_delay=d.none_retry_delay,
            clock=self.clock,
            metrics=self.metrics,
            rate=hooks.per_endpoint_rate,
            burst=hooks.per_endpoint_burst or hooks.per_endpoint_concurrency,
            breaker=hooks.breaker,
            overrides=hooks.endpoints,
        )

    def _build_ingest(self, topics: Topics) -> MqttIngest:
        store = SqliteStore(self.config.store_path, durable=True)
        wake = self.dispatcher.wake if self.dispatcher is not None else (lambda: None)
        return MqttIngest(
            self.config.mqtt,
            topics,
            EventIntake(store, topics, self.config.limits),
            store,
            metrics=self.metrics,
            on_committed=wake,
            clock=self.clock,
            before_commit=self.before_commit,
        )

    def _build_api(self, topics: Topics) -> tuple[uvicorn.Server, MqttMonitorChannel]:
        store = SqliteStore(self.config.store_path)

        def on_state(_topic: str, state: VehicleMonitorState | None, vin: str, mid: str) -> None:
            if state is None:
                store.clear_vehicle_state(mid, vin)
            else:
                store.set_vehicle_state(state)

        channel = MqttMonitorChannel(
            self.config.mqtt,
            topics,
            store=store,
            on_state=on_state,
            on_bad_state=lambda reason: self.metrics.skipped.labels(reason=reason).inc(),
            limits=self.config.limits,
        )
        ctx = ApiContext(
            store=store,
            channel=channel,
            metrics=self.metrics,
            tokens=self.config.api.tokens,
            allow_insecure_http=self.config.webhooks.allow_insecure_http,
            policy=self.config.webhooks.policy,
            base_url=self.config.api.base_url,
            clock=self.clock,
            max_age=self.config.dispatcher.max_age,
            limits=self.config.limits,
            health=self.parts,
        )
        server_config = uvicorn.Config(
            build_api(ctx),
            host=self.config.api.host,
            port=self.config.api.port,
            log_level="warning",
            lifespan="off",
        )
        return uvicorn.Server(server_config), channel

    async def run(self, stop: asyncio.Event) -> None:
        """Run the configured roles until ``stop`` is set, then shut down cleanly."""
        store = SqliteStore(self.config.store_path)  # migrate once, before the roles start
        for vin, fleet_id in self.config.vehicles.items():  # [fleets.*] vehicles
            store.put_vehicle(vin, fleet_id, self.clock())
        store.close()
        topics = Topics(self.config.topic_prefix)
        tasks = self.tasks
        if "dispatcher" in self.roles:
            self.dispatcher = self._build_dispatcher()
            retention = SqliteStore(self.config.store_path)
            purging = purge_loop(retention, self.config.retention, stop, self.clock, self.metrics)
            self.dispatcher_tasks = [
                asyncio.create_task(self.dispatcher.run(stop)),
                asyncio.create_task(purging),
            ]
            tasks += self.dispatcher_tasks
        if "ingest" in self.roles:
            self.ingest = self._build_ingest(topics)
            self.ingest.start()
        if "api" in self.roles:
            self.server, channel = self._build_api(topics)
            self.channel = channel
            channel.start()
            tasks.append(asyncio.create_task(self.server.serve()))
            sync = status_sync(channel, stop, self.status_sync_interval)
            tasks.append(asyncio.create_task(sync))
        log.info("edgemon-backend running: %s", ", ".join(sorted(self.roles)))
        pings = asyncio.create_task(watchdog(self.failing, stop, note=self._status_line))
        try:
            await stop.wait()
        finally:
            if self.server is not None:
                self.server.should_exit = True
            if self.ingest is not None:
                await asyncio.to_thread(self.ingest.stop)
            if self.channel is not None:
                await asyncio.to_thread(self.channel.stop)
            await asyncio.gather(*tasks, pings, return_exceptions=True)
            if self.dispatcher is not None:
                await self.dispatcher.sender.close()
