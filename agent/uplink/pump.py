"""The outbox pump: pending events in ``seq`` order onto the MQTT link, deleted on PUBACK.

Main-loop side only (no lock): ``handle`` takes the link's events, ``fill`` publishes what the
window and the pace allow. Sessions, refusals and latency are described in ``agent.uplink.mqtt``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from agent.backoff import Backoff
from agent.story import acked_line, payload_about
from agent.uplink.mqtt import (
    Acked,
    Connected,
    Disconnected,
    LinkEvent,
    MqttLink,
)
from agent.uplink.outbox import Outbox
from agent.wire import Topics

log = logging.getLogger(__name__)


class EventPump:
    """Main-loop side: sends pending outbox events in ``seq`` order, deletes them on PUBACK.

    An event the broker accepted but delivered to nobody (reason 16) stays in the outbox; the
    pump pauses (backoff from ``hold_min`` to ``hold_max`` seconds) and then resends from the
    oldest such event, so order is kept and nothing is lost while the backend resubscribes.

    Publishing is paced by a token bucket (``max_rate`` events/s, ``burst`` at once): a backlog
    of hours drains steadily instead of all at once, under the backend's per-vehicle rate limit,
    which acknowledges and drops what exceeds it (a rogue vehicle must not flood a fleet).
    """

    def __init__(
        self,
        outbox: Outbox,
        link: MqttLink,
        topics: Topics,
        window: int = 20,
        *,
        clock: Callable[[], float] = time.monotonic,
        hold_min: float = 0.5,
        hold_max: float = 10.0,
        max_rate: float = 50.0,
        burst: int = 500,
    ) -> None:
        self.outbox = outbox
        self.link = link
        self.topics = topics
        self.window = window
        # mid -> (event_id, seq, monitor id and refresh for the log), this generation
        self._inflight: dict[int, tuple[str, int, tuple[str | None, bool | None]]] = {}
        self._generation = -1
        self._last_seq = 0
        self._clock = clock
        self._hold = Backoff(hold_min, hold_max)  # no jitter: one vehicle, one broker
        self._holds = 0  # holds in a row, until an event is acknowledged again
        self._hold_until = 0.0
        self._resend_from: int | None = None  # oldest seq that reached no subscriber
        self._rate, self._burst = max_rate, float(burst)
        self._tokens, self._refilled = float(burst), clock()
        self.counters: dict[str, int] = {"sent": 0, "unacked_at_disconnect": 0, "acked": 0}
        self.counters["broker_rejected"] = 0
        self.counters["no_subscribers"] = 0

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def handle(self, event: LinkEvent) -> None:
        """Feed one link event (only the kinds the pump cares about)."""
        if isinstance(event, Connected):
            self._generation = event.generation
            self._inflight.clear()
            self._last_seq = 0  # resend everything still in the outbox, oldest first
            self._resend_from = None
        elif isinstance(event, Disconnected) and event.generation == self._generation:
            self.counters["unacked_at_disconnect"] += len(self._inflight)
            self._inflight.clear()
        elif isinstance(event, Acked) and event.generation == self._generation:
            self._on_ack(event)

    def handle_acks(self, events: list[Acked]) -> None:
        """Many PUBACKs at once: one outbox transaction."""
        ids = []
        for event in events:
            if event.generation != self._generation:
                continue
            entry = self._inflight.pop(event.mid, None)
            if entry is None:
                continue
            event_id, seq, about = entry
            if event.ok:
                ids.append(event_id)
                log.info("%s", acked_line(seq, event_id, *about))
            elif event.no_subscribers:
                self._nobody_listened(seq)
            else:
                self._rejected(event_id, event.reason)
        if ids:
            self.counters["acked"] += self.outbox.ack_many(ids)
            if self._resend_from is None:
                self._holds = 0

    def _nobody_listened(self, seq: int) -> None:
        self.counters["no_subscribers"] += 1
        if self._resend_from is None:
            hold = self._hold.delay(self._holds, 1.0)
            log.warning("MQTT: no subscriber for events; holding them, resending in %.1f s", hold)
            self._hold_until = self._clock() + hold
            self._holds += 1
        self._resend_from = seq if self._resend_from is None else min(self._resend_from, seq)

    def _on_ack(self, event: Acked) -> None:
        self.handle_acks([event])

    def _rejected(self, event_id: str, reason: str) -> None:
        # Kept in the outbox: it is sent again after the next reconnect (an ACL fix, say).
        self.counters["broker_rejected"] += 1
        log.error("MQTT: broker refused event %s (%s); kept in the outbox", event_id, reason)

    def fill(self) -> int:
        """Publish pending events up to the window; returns how many were sent."""
        if not self.link.connected or self.link.generation != self._generation:
            return 0
        if self._resend_from is not None:
            if self._clock() < self._hold_until:
                return 0
            self._last_seq = self._resend_from - 1  # rewind: resend from the oldest unheard
            self._resend_from = None
        room = min(self.window - len(self._inflight), self._allowance())
        if room <= 0 or self.outbox.last_seq <= self._last_seq:
            return 0  # window full, or nothing newer than what this connection already sent
        sent = 0
        for item in self.outbox.pending(room, after_seq=self._last_seq):
            mid = self.link.publish(self.topics.events(item.vin), item.payload, qos=1)
            if mid < 0:
                break
            about = payload_about(item.payload) if log.isEnabledFor(logging.INFO) else (None, None)
            self._inflight[mid] = (item.event_id, item.seq, about)
            self._last_seq = item.seq
            sent += 1
        self._tokens -= sent
        self.counters["sent"] += sent
        return sent

    def _allowance(self) -> int:
        """Whole events the rate budget allows now (the bucket refills at ``max_rate``/s)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        return int(self._tokens)

    def next_send_in(self) -> float | None:
        """Seconds until the budget allows one more event while events wait; None otherwise."""
        if self._tokens >= 1 or not self.link.connected or self.outbox.last_seq <= self._last_seq:
            return None
        return (1 - self._tokens) / self._rate
