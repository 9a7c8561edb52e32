"""Random valid payloads for any cantools message (tests of the CAN area)."""

from __future__ import annotations

import math
import random
import struct
from typing import Any

from cantools.database.can import Message, Signal
from cantools.database.namedsignalvalue import NamedSignalValue


def raw_range(signal: Signal) -> tuple[int, int]:
    """The raw integer range the signal's bits can hold."""
    if signal.is_signed:
        return -(1 << (signal.length - 1)), (1 << (signal.length - 1)) - 1
    return 0, (1 << signal.length) - 1


def random_raw(signal: Signal, rng: random.Random) -> int | float:
    """A raw value: a DBC choice, a value inside [minimum, maximum], or anything the bits hold."""
    if signal.is_float:
        value = rng.uniform(-1000.0, 1000.0)
        if signal.length == 32:  # what float32 can hold exactly
            value = struct.unpack("<f", struct.pack("<f", value))[0]
        return value
    low, high = raw_range(signal)
    pick = rng.random()
    if signal.choices and pick < 0.3:
        candidates = [int(k) for k in signal.choices if low <= int(k) <= high]
        if candidates:
            return rng.choice(candidates)
    if pick < 0.8 and signal.minimum is not None and signal.maximum is not None and signal.scale:
        ends = sorted(
            (
                (signal.minimum - signal.offset) / signal.scale,
                (signal.maximum - signal.offset) / signal.scale,
            )
        )
        lo, hi = max(low, math.ceil(ends[0])), min(high, math.floor(ends[1]))
        if lo <= hi:
            return rng.randint(lo, hi)
    return rng.randint(low, high)


def _walk(tree: list[Any], message: Message, rng: random.Random, out: dict[str, Any]) -> None:
    for node in tree:
        if isinstance(node, str):
            out[node] = random_raw(message.get_signal_by_name(node), rng)
            continue
        for mux_name, pages in node.items():
            page = rng.choice(sorted(pages))
            out[mux_name] = page
            _walk(pages[page], message, rng, out)


def random_raw_values(message: Message, rng: random.Random) -> dict[str, Any]:
    """Raw values for one frame: every plain signal, and one random page of each multiplexer."""
    out: dict[str, Any] = {}
    _walk(message.signal_tree, message, rng, out)
    return out


def encode_raw(message: Message, raw_values: dict[str, Any]) -> bytes:
    return bytes(message.encode(raw_values, scaling=False, padding=False, strict=False))


def expected_value(signal: Signal, raw: Any) -> Any:
    """What decoding should give for a raw value: the choice name, else the scaled number."""
    value = signal.conversion.raw_to_scaled(raw, True)
    return plain(value)


def plain(value: Any) -> Any:
    """cantools' decoded value as the vehicle state keeps it (choice objects become names)."""
    if isinstance(value, NamedSignalValue):
        return str(value.name)
    return value


def decode_each(message: Message, data: bytes) -> dict[str, Any] | None:
    """cantools' decoding signal by signal, for messages it refuses as a whole (overlapping
    signals); None when it cannot decode one of them either, or the message is multiplexed."""
    if message.is_multiplexed():
        return None
    out: dict[str, Any] = {}
    for signal in message.signals:
        single = Message(
            message.frame_id,
            message.name,
            message.length,
            [signal],
            is_extended_frame=message.is_extended_frame,
            strict=False,
        )
        try:
            out[signal.name] = single.decode(data, decode_choices=True)[signal.name]
        except Exception:
            return None
    return out
