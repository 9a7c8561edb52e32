"""The running agent's live view, for ``edgemon-agent status`` (issue 18, like ``cantools
monitor``): the signals the monitors read with their value and age, each monitor's truth and
its triggers', the outbox depth and the broker link.

The daemon writes it every second to ``status.json`` in its runtime directory (systemd's
``$RUNTIME_DIRECTORY``, a tmpfs under ``/run``, so a Raspberry Pi's SD card is not written
every second), else beside the outbox in ``state_dir``; atomically (a temporary file renamed
over it), so a reader never sees half a document. The retained MQTT status (``agent.wire``)
stays what the backend reads; this file is the gateway's own.

``snapshot`` is pure (``now`` comes in); ``write_snapshot`` and ``read_snapshot`` are the I/O.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.errors import UsageError
from agent.monitors.engine import Engine
from agent.state import VehicleState
from agent.wire import format_date

LIVE_SCHEMA = "edgemon.live/1"
LIVE_FILE = "status.json"
LIVE_PERIOD = 1.0  # seconds between two writes
MAX_LIVE_BYTES = 4 * 1024 * 1024  # a reader refuses a larger file


def live_path(state_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    """Where the daemon writes its live view: ``$RUNTIME_DIRECTORY`` (the first, when systemd
    lists several), else ``state_dir``."""
    env = os.environ if environ is None else environ
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return (Path(runtime) if runtime else state_dir) / LIVE_FILE


def _json_value(value: object) -> object:
    return value if isinstance(value, bool | int | float | str) or value is None else str(value)


def snapshot(
    *,
    vin: str,
    engine: Engine,
    state: VehicleState,
    now: float,
    outbox_depth: int,
    broker: str,
    connected: bool,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The live view at ``now`` (trusted clock)."""
    signals: dict[str, Any] = {}
    for name in sorted(engine.wanted_names()):
        cell = state.get(name)
        signals[name] = {
            "value": None if cell is None else _json_value(cell.value),
            "ageSeconds": None if cell is None else round(max(0.0, now - cell.timestamp), 3),
            "stale": cell is None or cell.stale(now),
        }
    monitors: dict[str, Any] = {}
    for monitor in sorted(engine.monitors(), key=lambda m: m.id):
        runtime = engine.runtime(monitor.id)
        if runtime is None:
            continue
        last = runtime.last_event
        monitors[monitor.id] = {
            "label": monitor.label,
            "boolExp": monitor.bool_exp,
            "paused": monitor.paused,
            "truth": runtime.truth,
            "triggers": dict(runtime.truths),
            "fired": runtime.fired,
            "lastEvent": format_date(datetime.fromtimestamp(last, UTC)) if last else None,
        }
    return {
        "schema": LIVE_SCHEMA,
        "vin": vin,
        "at": format_date(datetime.fromtimestamp(now, UTC)),
        "broker": {"address": broker, "connected": connected},
        "outboxDepth": outbox_depth,
        "signals": signals,
        "monitors": monitors,
        **(extra or {}),
    }


def write_snapshot(path: Path, body: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically (raises OSError)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(body, separators=(",", ":")), encoding="utf-8")
    os.replace(temporary, path)


def read_snapshot(path: Path) -> dict[str, Any]:
    """The live view a daemon wrote; UsageError (exit 2) when missing, too large or not ours."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_LIVE_BYTES + 1)
    except OSError as exc:
        raise UsageError(
            f"cannot read {path} ({exc.strerror or exc}): is the agent running with this "
            "configuration?"
        ) from exc
    if len(data) > MAX_LIVE_BYTES:
        raise UsageError(f"{path}: larger than {MAX_LIVE_BYTES} bytes, not a live view")
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(body, dict) or body.get("schema") != LIVE_SCHEMA:
        raise UsageError(f"{path}: not an edgemon live view ({LIVE_SCHEMA})")
    return body
