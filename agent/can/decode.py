"""Frames in, named values into the vehicle state: the hot path of the agent.

Per frame, cheapest test first: unknown bus or id, id carrying no signal in use, wrong length
(cantools silently accepts longer payloads; a DLC that differs from the DBC is a bad frame here),
payload unchanged since the previous frame of that id (and multiplexer page) once the bits of
rolling counters and checksums are masked out. Only then is it decoded: the used signals are
cut out of the payload as integers and converted by cantools' own conversion (plain messages),
or cantools decodes the frame (multiplexed messages, float signals, signals past the payload).
Every skip counts under its reason in :attr:`Decoder.counters`.

A skipped unchanged frame still proves its signals are alive: it refreshes their timestamps in
the state (directly on the state's ``SignalState`` cells, kept per message page), so staleness
means "no frame", never "no change".

``feed`` takes one frame, for the daemon, ``replay`` and the benchmarks alike (``agent.pipeline``).
Pure: no clock, no I/O. The state's values are stored under both the ``Message.Signal`` key and
the data name of the map.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from agent.can.dbc import EXTENDED_FLAG, SignalRef, Vehicle, message_key, signal_period
from agent.can.frame_layout import (
    UNUSED,
    Output,
    Page,
    Route,
    data_output,
    is_rolling_name,
    plan_route,
    signal_bits,
)
from agent.model import Frame, Value
from agent.state import SignalState, VehicleState

__all__ = ["COUNTER_NAMES", "Decoder", "is_rolling_name", "signal_bits"]

log = logging.getLogger(__name__)

COUNTER_NAMES = (
    "frames",
    "decoded",
    "skipped_unknown_bus",
    "skipped_unknown_id",
    "skipped_unused",
    "skipped_bad_length",
    "skipped_unchanged",
    "skipped_decode_error",
    "unmapped_value",
)


class Decoder:
    """Decode frames of the signals in use into a VehicleState."""

    def __init__(
        self, vehicle: Vehicle, stale_factor: float = 3.0, default_timeout: float = 5.0
    ) -> None:
        self.vehicle = vehicle
        self.stale_factor = stale_factor
        self.default_timeout = default_timeout
        self._counts: dict[str, int] = dict.fromkeys(COUNTER_NAMES[1:], 0)
        self.unresolved: set[str] = set()
        self._routes: dict[str, dict[int, Route]] = {}
        self._state: VehicleState | None = None
        self.use(())

    @property
    def counters(self) -> dict[str, int]:
        """Frames seen, decoded, and skipped by reason (a snapshot; ``frames`` is their sum)."""
        counts = self._counts
        frames = counts["decoded"] + sum(v for k, v in counts.items() if k.startswith("skipped_"))
        return {"frames": frames, **counts}

    def reset_counters(self) -> None:
        self._counts = dict.fromkeys(self._counts, 0)

    # -- configuration -------------------------------------------------------------------------

    def use(self, names: Iterable[str]) -> None:
        """Set the names in use (data names or ``Message.Signal``); others are not decoded."""
        wanted: dict[tuple[str, int], dict[str, Output]] = {}
        self.unresolved = set()
        for name in names:
            ref = self.vehicle.lookup(name)
            if ref is None:
                self.unresolved.add(name)
                continue
            outputs = wanted.setdefault((ref.bus, message_key(ref.message)), {})
            output = outputs.get(ref.key) or self._output(ref)
            outputs[ref.key] = output
            if ref.binding is not None and all(d.name != name for d in output.data):
                output.data.append(data_output(ref.binding, output.choices))
        if self.unresolved:
            log.info("names not provided by the CAN buses: %s", ", ".join(sorted(self.unresolved)))
        self._routes = {}
        for bus, bus_db in self.vehicle.buses.items():
            rolling = set(bus_db.spec.rolling_signals)
            table: dict[int, Route] = {}
            for key, message in bus_db.by_id.items():
                used = list(wanted.get((bus, key), {}).values())
                table[key] = plan_route(message, used, rolling) if used else UNUSED
            self._routes[bus] = table
        self._state = None

    def _output(self, ref: SignalRef) -> Output:
        signal = ref.signal
        period = signal_period(ref.message, signal)
        base = period if period is not None else self.default_timeout
        choices = {int(k): str(v) for k, v in (signal.choices or {}).items()}
        return Output(
            ref.key,
            signal.name,
            signal.conversion.raw_to_scaled,
            choices,
            base * self.stale_factor,
            [],
        )

    def used_ids(self, bus: str) -> list[tuple[int, bool]]:
        """(arbitration id, extended) of every message carrying a used signal on ``bus``."""
        table = self._routes.get(bus, {})
        found = []
        for key, route in table.items():
            if route is not UNUSED:
                found.append((key & ~EXTENDED_FLAG, bool(key & EXTENDED_FLAG)))
        return sorted(found)

    def can_filters(self, bus: str) -> list[dict[str, int | bool]]:
        """python-can ``can_filters`` for the ids in use on ``bus`` ([] when none is in use)."""
        return [
            {
                "can_id": frame_id,
                "can_mask": 0x1FFF_FFFF if extended else 0x7FF,
                "extended": extended,
            }
            for frame_id, extended in self.used_ids(bus)
        ]

    # -- the hot path --------------------------------------------------------------------------

    def feed(self, frame: Frame, state: VehicleState) -> list[str]:
        """Decode one frame into ``state``; return the names whose value changed."""
        counts = self._counts
        table = self._routes.get(frame.bus)
        if table is None:
            counts["skipped_unknown_bus"] += 1
            return []
        frame_id = frame.arbitration_id
        route = table.get(frame_id | EXTENDED_FLAG if frame.is_extended else frame_id)
        if route is UNUSED:
            counts["skipped_unused"] += 1
            return []
        if route is None:
            counts["skipped_unknown_id"] += 1
            return []
        data = frame.data
        if len(data) != route.length:
            counts["skipped_bad_length"] += 1
            return []
        if state is not self._state:
            self._bind(state)
        payload = int.from_bytes(data, "little")
        masked = payload & route.mask
        if masked == route.last:
            cells: list[SignalState] | None = route.cells
        else:
            cells = route.page_cells(payload, masked) if route.mux_mask else None
        if cells is None:
            return self._decode(route, frame, state, payload, masked)
        timestamp = frame.timestamp
        for cell in cells:
            cell.timestamp = timestamp
        counts["skipped_unchanged"] += 1
        return []

    def _decode(
        self, route: Route, frame: Frame, state: VehicleState, payload: int, masked: int
    ) -> list[str]:
        raw_values: dict[str, Any] | None = None
        if not route.direct:
            try:
                raw_values = route.message.decode_simple(frame.data, False, False)
            except Exception:  # cantools: DecodeError, ValueError, struct errors on odd payloads
                self._counts["skipped_decode_error"] += 1
                return []
        self._counts["decoded"] += 1
        big = int.from_bytes(frame.data, "big") if route.has_big_endian else 0
        changed: list[str] = []
        cells: list[SignalState] = []
        for output in route.outputs:
            raw: Any
            if raw_values is None:
                raw = ((big if output.big_endian else payload) >> output.shift) & output.width
                if raw & output.sign_bit:
                    raw -= output.sign_bit << 1
            else:
                raw = raw_values.get(output.signal)
                if raw is None:  # not on this multiplexer page
                    continue
            self._store(output, raw, frame.timestamp, state, changed=changed, cells=cells)
        if route.mux_mask:
            route.pages[payload & route.mux_mask] = Page(masked, cells)
        else:
            route.last, route.cells = masked, cells
        return changed

    def _store(
        self,
        output: Output,
        raw: Any,
        timestamp: float,
        state: VehicleState,
        *,
        changed: list[str],
        cells: list[SignalState],
    ) -> None:
        """Put one signal's value into the state under its key and its data names."""
        scaled: Value = output.to_scaled(raw, False)
        value = output.choices.get(raw, scaled) if output.choices else scaled
        if state.update(output.key, value, timestamp, output.max_age):
            changed.append(output.key)
        cells.append(state.get(output.key))  # type: ignore[arg-type]
        for data in output.data:
            converted = data.convert(raw, scaled)
            if converted is None:
                self._counts["unmapped_value"] += 1
                continue
            if state.update(data.name, converted, timestamp, output.max_age):
                changed.append(data.name)
            cells.append(state.get(data.name))  # type: ignore[arg-type]

    def _bind(self, state: VehicleState) -> None:
        """A new state: forget the payload memory (its cells belong to the previous state)."""
        for table in self._routes.values():
            for route in table.values():
                route.forget()
        self._state = state

    def reset(self) -> None:
        """Forget previous payloads: the next frame of every id is decoded."""
        self._state = None
