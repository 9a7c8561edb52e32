"""The log lines that tell what the agent does (pure: text from values, no I/O).

At start, a summary of what it runs with (VIN, buses and their DBC sets, the signals the monitors
read, the monitors, the clock); then one line per event when it is committed to the outbox and
one when the broker acknowledges it, both with the sequence number that ties them together.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from agent.config import AgentConfig
from agent.gps.clock import TrustedClock
from agent.model import Event
from agent.monitors.model import Monitor

# A summary line lists at most this many names, then "... and N more".
LIST_LIMIT = 12


def listed(names: Iterable[str], limit: int = LIST_LIMIT) -> str:
    """``a, b, c`` (sorted), shortened to ``limit`` names; ``none`` when empty."""
    ordered = sorted(names)
    if not ordered:
        return "none"
    head = ", ".join(ordered[:limit])
    rest = len(ordered) - limit
    return f"{head} ... and {rest} more" if rest > 0 else head


def startup_lines(
    config: AgentConfig,
    signals: Iterable[str],
    monitors: Sequence[Monitor],
    clock: TrustedClock,
    outbox_depth: int,
) -> list[str]:
    """The summary logged once the agent is up, one topic per line."""
    mqtt = config.mqtt
    transport = "TLS" if mqtt.tls else "plain TCP"
    if mqtt.cert_file is not None:
        transport += " with a client certificate"
    lines = [
        f"agent up: vin {config.vin}, fleet {config.fleet_id or '-'}, {len(config.buses)} bus(es),"
        f" {len(monitors)} monitor(s), outbox depth {outbox_depth},"
        f" MQTT {mqtt.host}:{mqtt.port} ({transport})"
    ]
    specs = {spec.name: spec for spec in config.dbc}
    for bus in config.buses:
        spec = specs.get(bus.name)
        dbc = ", ".join(str(p) for p in spec.dbc_files) if spec else "-"
        signal_map = spec.signal_map if spec and spec.signal_map else "-"
        replay = next((r for r in config.can_replay if r.bus == bus.name), None)
        source = f"replay of {replay.path}" if replay else f"{bus.interface} {bus.channel}"
        lines.append(f"bus {bus.name}: {source}; DBC {dbc}; signal map {signal_map}")
    used = list(signals)
    lines.append(f"signals in use: {len(used)}: {listed(used)}")
    lines.append(
        f"monitors: {listed(f'{m.id} {m.label!r}' + _paused(m) for m in monitors)}"
        f"{'; local file ' + str(config.monitors_file) if config.monitors_file else ''}"
    )
    synced = "synchronised" if clock.system_synced else "not synchronised"
    lines.append(
        f"clock: policy {clock.policy}, source {clock.source} (system clock {synced});"
        f" GPS {config.gps.port if config.gps else 'none'}"
    )
    return lines


def _paused(monitor: Monitor) -> str:
    return "" if monitor.status == "Running" else f" ({monitor.status})"


def committed_line(event: Event, label: str | None) -> str:
    name = f"{event.monitor_id} {label!r}" if label else event.monitor_id
    kind = "refresh" if event.refresh else "new"
    return f"event seq {event.seq} committed: monitor {name}, {kind}, id {event.event_id}"


def acked_line(seq: int, event_id: str, monitor_id: str | None, refresh: bool | None) -> str:
    kind = "" if refresh is None else (", refresh" if refresh else ", new")
    return (
        f"event seq {seq} acknowledged by the broker: monitor {monitor_id or '?'}{kind},"
        f" id {event_id}"
    )


def payload_about(payload: bytes) -> tuple[str | None, bool | None]:
    """The monitor id and refresh flag of an event's wire payload (None for what is not there)."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(obj, dict):
        return None, None
    monitor_id = obj.get("monitorId")
    refresh = obj.get("refresh")
    return (
        monitor_id if isinstance(monitor_id, str) else None,
        refresh if isinstance(refresh, bool) else None,
    )
